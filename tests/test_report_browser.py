"""The reports in a real browser: Debian's Chromium, headless, driven by Playwright.

Each page is opened at 1280 px; the test asserts what a reader meets: no console error, no broken image, no
horizontal scrolling, and the sections in their order. ``HEADSTART_SCREENSHOTS=DIR`` also saves a full-page
screenshot of each (how docs/img/report-*.png are made). Skips, with the reason, where Chromium or Playwright
is missing; `make test` installs Chromium from the system packages when it can.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import headstart

from .conftest import CHROMIUM, open_page, write_image_folder, write_text_table

pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")]


def open_report(browser, path: Path, shot: str) -> tuple[object, list[str]]:
    return open_page(browser, path, f"report-{shot}.png")


def check_page(page, errors: list[str], sections: list[str]) -> None:
    assert errors == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # no horizontal scrolling
    broken = page.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert broken == 0 and page.evaluate("document.images.length") > 0
    found = page.evaluate("[...document.querySelectorAll('h2')].map(h => h.textContent)")
    assert [s for s in found if s in sections] == sections, found
    # self-contained: nothing is fetched from beside the file
    assert page.evaluate("[...document.images].every(i => i.src.startsWith('data:'))")


def test_fit_report_reads_well_in_a_browser(browser, tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "imgs", per_class=24, classes=3, seed=1)
    run = headstart.fit(data, model="scratch:cnn@32", strategy="finetune", epochs=2, out=str(tmp_path / "a-run-name"))
    page, errors = open_report(browser, run.path / "report.html", "fit")
    check_page(page, errors, ["Training", "Calibration", "Mistakes", "Data", "Reproduce"])
    text = page.inner_text("body")
    assert "Accuracy" in text and "Expected calibration error (held out)" in text and "Temperature that would fix it" in text
    assert "n_train" not in text and "kept_epoch" not in text  # human labels, not keys
    # the headline figures come first, the details are folded away
    assert page.evaluate("document.querySelector('.cards').getBoundingClientRect().top") < 400
    assert page.evaluate("[...document.querySelectorAll('details')].every(d => !d.open)")
    command = page.inner_text("pre")
    assert command.startswith(f"headstart fit {data} --model scratch:cnn@32") and "--epochs 2" in command
    # thumbnails of the mistakes are the held-out images themselves
    assert page.evaluate("document.querySelectorAll('.ex img').length") >= 1


def test_compare_rank_and_tune_reports_read_well_in_a_browser(browser, tmp_path: Path) -> None:
    data = write_text_table(tmp_path / "texts.csv", per_class=16)
    headstart.compare(data, "linear,finetune", "4,all", model="scratch:bow", epochs=2, out=str(tmp_path / "cmp"))
    page, errors = open_report(browser, tmp_path / "cmp" / "report.html", "compare")
    assert errors == [] and page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert page.evaluate("document.images.length") == 1 and "Labels per class" in page.inner_text("table")
    long_name = "py:" + str(tmp_path / ("a_rather_long_folder_name_" * 4)) + "/model.py:factory"
    assert len(long_name) > 120
    headstart.rank(data, ["scratch:bow", "scratch:bow@64"], metrics="logme,knn", goal="linear", out=tmp_path / "rk")
    html = (tmp_path / "rk" / "report.html").read_text()
    (tmp_path / "rk" / "report.html").write_text(html.replace("scratch:bow@64", long_name))  # a user's long model path
    page, errors = open_report(browser, tmp_path / "rk" / "report.html", "rank")
    assert errors == [] and page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert "LogME" in page.inner_text("table")
    from headstart.tasks.tune import tune

    tune(str(data), trials=3, strategy="scratch", out=tmp_path / "tn", model="scratch:bow", epochs=2)
    page, errors = open_report(browser, tmp_path / "tn" / "report.html", "tune")
    check_page(page, errors, ["Best against the default configuration", "Best values", "The search"])
