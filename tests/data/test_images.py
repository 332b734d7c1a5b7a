from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart.data import decode_image, load_data
from headstart.errors import DataError
from tests.conftest import write_image_folder


def test_flat_folder_is_split_stratified(image_folder: Path) -> None:
    ds = load_data(image_folder, seed=0, test_fraction=0.25, val_fraction=0.2)
    assert ds.modality == "image" and ds.task == "binary" and ds.classes == ["left", "right"]
    assert np.bincount(ds.y[ds.test_idx]).tolist() == [3, 3]
    assert ds.items[0].dtype == np.uint8 and ds.items[0].shape == (40, 40, 3)


def test_train_val_layout_reports_on_val_and_selects_on_train_part(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "tv", per_class=10, layout="trainval")
    ds = load_data(root, val_fraction=0.2)
    assert all("/val/" in ds.refs[i] for i in ds.test_idx)  # val/ is what gets reported
    assert all("/train/" in ds.refs[i] for i in np.concatenate([ds.train_idx, ds.val_idx]))
    assert len(ds.val_idx) == 4  # 20% of train/ held out for selection


def test_validation_folder_name_and_test_folder(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "tvt", per_class=8, layout="trainval")
    (root / "val").rename(root / "validation")
    write_image_folder(root / "test", per_class=3)
    ds = load_data(root)
    assert all("/test/" in ds.refs[i] for i in ds.test_idx)
    assert all("/validation/" in ds.refs[i] for i in ds.val_idx)


def test_unreadable_file_skipped_with_count_or_strict_error(image_folder: Path) -> None:
    bad = image_folder / "left" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    ds = load_data(image_folder)
    assert len(ds.skipped) == 1 and ds.skipped[0][0] == str(bad)
    assert len(ds.items) == 24
    with pytest.raises(DataError, match=r"broken\.jpg: cannot decode image"):
        load_data(image_folder, strict=True)


def test_truncated_jpeg_is_skipped(image_folder: Path) -> None:
    good = image_folder / "left" / "left_0.png"
    Image.open(good).save(image_folder / "left" / "t.jpg", quality=90)
    data = (image_folder / "left" / "t.jpg").read_bytes()
    (image_folder / "left" / "t.jpg").write_bytes(data[: len(data) // 2])
    ds = load_data(image_folder)
    assert [Path(s[0]).name for s in ds.skipped] == ["t.jpg"]


def test_empty_class_folder_is_an_error(image_folder: Path) -> None:
    (image_folder / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: class folder has no image files"):
        load_data(image_folder)


def test_single_class_folder_is_an_error(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "one", per_class=4, classes=2)
    import shutil

    shutil.rmtree(root / "right")
    with pytest.raises(DataError, match="only one class"):
        load_data(root)


def test_class_only_in_val_is_an_error(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "tv", per_class=6, layout="trainval")
    (root / "val" / "extra").mkdir()
    Image.new("RGB", (10, 10)).save(root / "val" / "extra" / "x.png")
    with pytest.raises(DataError, match=r"label 'extra' appears in the test data but never in training"):
        load_data(root)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "LA", "1"])
def test_decode_any_mode_to_rgb(tmp_path: Path, mode: str) -> None:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3)).astype(np.uint8))
    if mode == "I;16":
        im = Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16))
    else:
        im = rgb.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    im.save(path)
    arr = decode_image(path)
    assert arr.shape == (20, 30, 3) and arr.dtype == np.uint8


def test_png_named_jpg_and_large_images_are_downscaled(tmp_path: Path) -> None:
    p = tmp_path / "really_png.jpg"
    Image.new("RGB", (1000, 600), (10, 20, 30)).save(p, format="PNG")
    arr = decode_image(p, max_side=300)
    assert arr.shape == (300, 500, 3)


def test_unicode_and_spaces_in_paths(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "dossier élève" / "données 1", per_class=5)
    (root / "left").rename(root / "gauche à")
    ds = load_data(root)
    assert "gauche à" in ds.classes


def test_digits_builtin() -> None:
    ds = load_data("digits", seed=0)
    assert ds.num_classes == 10 and ds.items[0].shape == (8, 8, 3)
    assert len(ds.train_idx) + len(ds.val_idx) + len(ds.test_idx) == 1797


def test_decoded_values_follow_each_mode(tmp_path: Path) -> None:
    """Not only shape and dtype: the RGB values a user would see for each kind of file."""

    def decoded(im: Image.Image, name: str) -> np.ndarray:
        im.save(tmp_path / name)
        return decode_image(tmp_path / name).astype(int)

    gray = np.arange(0, 240, 8, dtype=np.uint8).reshape(5, 6)
    out = decoded(Image.fromarray(gray, "L"), "gray.png")
    assert (out == gray[..., None]).all()  # every channel is the gray level
    # RGBA over white: opaque keeps its colour, transparent is white, half-transparent red is pink
    rgba = np.array([[[200, 10, 30, 255], [0, 0, 0, 0], [255, 0, 0, 128]]], dtype=np.uint8)
    out = decoded(Image.fromarray(rgba, "RGBA"), "rgba.png")
    assert out[0, 0].tolist() == [200, 10, 30] and out[0, 1].tolist() == [255, 255, 255]
    assert np.abs(out[0, 2] - [255, 127, 127]).max() <= 1
    la = np.array([[[100, 255], [100, 0]]], dtype=np.uint8)
    out = decoded(Image.fromarray(la, "LA"), "la.png")
    assert out[0, 0].tolist() == [100] * 3 and out[0, 1].tolist() == [255] * 3
    # palette: each index shows its palette colour; a transparent index is white
    pal = Image.new("P", (3, 1))
    pal.putpalette([255, 0, 0, 0, 128, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    pal.putdata([0, 1, 2])
    assert decoded(pal, "pal.png")[0].tolist() == [[255, 0, 0], [0, 128, 0], [0, 0, 255]]
    pal.info["transparency"] = 1
    assert decoded(pal, "pal_t.png")[0].tolist() == [[255, 0, 0], [255, 255, 255], [0, 0, 255]]
    # CMYK: no ink is white, full cyan is (0, 255, 255), full black ink is black
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255]]], dtype=np.uint8)
    assert decoded(Image.fromarray(cmyk, "CMYK"), "cmyk.tif")[0].tolist() == [[255, 255, 255], [0, 255, 255], [0, 0, 0]]
    # 16-bit: scaled so that the brightest pixel is 255
    deep = np.array([[0, 1000, 2000, 4000]], dtype=np.uint16)
    out = decoded(Image.fromarray(deep), "deep.tif")[..., 0]
    assert out[0].tolist() == [0, 63, 127, 255]
    assert decoded(Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1"), "bw.png")[0, :, 0].tolist() == [0, 255]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A phone photo stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise to display)."""
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, 20:] = 255  # left half black, right half white, as stored
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    im.save(path, quality=95, exif=exif)
    arr = decode_image(path)
    assert arr.shape == (40, 20, 3)  # displayed upright: portrait
    assert arr[:16].mean() < 30 and arr[24:].mean() > 225  # the stored left half is now on top


def test_what_counts_as_an_image_file_and_a_class_folder(tmp_path: Path) -> None:
    from headstart.data import is_image_file
    from headstart.data._images import list_image_folder

    root = tmp_path / "photos"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / cls / "a.png")
    Image.new("RGB", (8, 8)).save(root / "cat" / ".hidden.png")  # a hidden file (macOS ._ files, editors' swap files)
    (root / "cat" / "notes.txt").write_text("x")
    (root / "cat" / "folder.png").mkdir()  # a directory named like an image
    (root / ".ipynb_checkpoints").mkdir()  # a hidden folder is not a class
    Image.new("RGB", (8, 8)).save(root / ".ipynb_checkpoints" / "a.png")
    assert is_image_file(root / "cat" / "a.png") and not is_image_file(root / "cat" / ".hidden.png")
    assert not is_image_file(root / "cat" / "notes.txt") and not is_image_file(root / "cat" / "folder.png")
    assert not is_image_file(root / "cat" / "missing.png")
    found = list_image_folder(root)
    assert sorted((p.name, c) for p, c in found["pool"]) == [("a.png", "cat"), ("a.png", "dog")]
    # class folders that happen to be called "test" and "val": without a train/ folder they are classes
    flat = tmp_path / "flat"
    for cls in ("test", "val"):
        (flat / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(flat / cls / "x.png")
    assert sorted(c for _, c in list_image_folder(flat)["pool"]) == ["test", "val"]


def test_image_folder_errors_say_what_to_do(tmp_path: Path) -> None:
    from headstart.data._images import list_image_folder

    with pytest.raises(DataError, match=r": not a folder$"):
        list_image_folder(tmp_path / "nope")
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.new("RGB", (8, 8)).save(loose / "a.png")
    with pytest.raises(DataError, match=r"no class sub-folders found \(images must sit in one sub-folder per class\); expected .*/<class>/<image files>$"):
        list_image_folder(loose)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"no class sub-folders found; expected"):
        list_image_folder(empty)
    (tmp_path / "cls" / "a").mkdir(parents=True)
    (tmp_path / "cls" / "b").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "cls" / "b" / "x.png")
    with pytest.raises(DataError, match=r"/a: class folder has no image files \(\.bmp, \.gif, .*\); add images or remove the folder$"):
        list_image_folder(tmp_path / "cls")


def test_other_integer_modes_and_black_frames(tmp_path: Path) -> None:
    """32-bit integer and big-endian 16-bit images are scaled like 16-bit ones; an all-black frame stays black."""
    deep = np.array([[0, 50000, 100000, 200000]], dtype=np.int32)
    Image.fromarray(deep, "I").save(tmp_path / "i32.tif")
    assert decode_image(tmp_path / "i32.tif")[0, :, 0].tolist() == [0, 63, 127, 255]
    raw = np.array([[0, 1000, 2000, 4000]], dtype=">u2")
    Image.frombytes("I;16B", (4, 1), raw.tobytes()).save(tmp_path / "be.png")
    assert decode_image(tmp_path / "be.png")[0, :, 0].tolist() == [0, 63, 127, 255]
    Image.fromarray(np.zeros((3, 3), np.uint16)).save(tmp_path / "black.tif")
    assert (decode_image(tmp_path / "black.tif") == 0).all()


def test_decode_all_passes_the_size_and_names_each_skipped_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from headstart.data._images import decode_all

    Image.new("RGB", (400, 200)).save(tmp_path / "big.png")
    (tmp_path / "bad.png").write_text("not an image")
    monkeypatch.setenv("HEADSTART_QUIET", "0")
    arrays, skipped = decode_all([tmp_path / "big.png", tmp_path / "bad.png"], strict=False, max_side=50)
    assert arrays[0].shape == (50, 100, 3) and arrays[1] is None
    assert skipped[0][0] == str(tmp_path / "bad.png") and "cannot decode image" in skipped[0][1]
    err = capsys.readouterr().err
    assert f"skipping {tmp_path / 'bad.png'}: cannot decode image" in " ".join(err.split())
    with pytest.raises(DataError, match=r"bad.png: cannot decode image .*drop --strict to skip unreadable files\)$"):
        decode_all([tmp_path / "bad.png"], strict=True)


def test_a_large_jpeg_ends_at_max_side_on_its_short_side(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (800, 1200, 3)).astype(np.uint8)).save(tmp_path / "big.jpg", quality=90)
    arr = decode_image(tmp_path / "big.jpg", max_side=100)
    assert arr.shape == (100, 150, 3) and arr.dtype == np.uint8


def test_load_image_paths_keeps_the_readable_ones_in_order(tmp_path: Path) -> None:
    from headstart.data import load_image_paths

    Image.new("RGB", (6, 4), (200, 0, 0)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_text("broken")
    Image.new("RGB", (6, 4), (0, 0, 200)).save(tmp_path / "c.png")
    arrays, refs, skipped = load_image_paths([tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"])
    assert refs == [str(tmp_path / "a.png"), str(tmp_path / "c.png")]
    assert [a[0, 0].tolist() for a in arrays] == [[200, 0, 0], [0, 0, 200]]
    assert [s[0] for s in skipped] == [str(tmp_path / "b.png")]
    with pytest.raises(DataError, match="b.png: cannot decode image"):
        load_image_paths([tmp_path / "b.png"], strict=True)


def test_downscaling_is_bilinear(tmp_path: Path) -> None:
    """The resampling filter is part of what the features see (and of the feature cache's key): bilinear."""
    rng = np.random.default_rng(3)
    im = Image.fromarray(rng.integers(0, 255, (60, 90, 3)).astype(np.uint8))
    im.save(tmp_path / "r.png")
    expected = np.asarray(im.resize((45, 30), Image.BILINEAR))
    assert np.array_equal(decode_image(tmp_path / "r.png", max_side=30), expected)
