"""`headstart serve`: the HTTP server answers what `Run.predict` answers, refuses bad requests one by one with a
4xx naming the problem, batches concurrent requests, and stops gracefully. Real runs, real HTTP (in-process
through the ASGI app, and a real uvicorn process for the lifecycle)."""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import headstart
from headstart.errors import HeadstartError
from headstart.run import load_run
from headstart.tasks.serve import ServeOptions, create_app, serve

from .conftest import free_port, write_image_folder, write_text_table

TEXTS = ["the goal match team today", "bake the oven recipe today", "score " * 2000]  # the last: truncated in tokens


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-text")
    run = headstart.fit(write_text_table(root / "t.csv", per_class=20), model="scratch:bow", strategy="scratch",
                        epochs=5, out=str(root / "run"), cache_dir=str(root / "cache"))
    return run.path


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-image")
    run = headstart.fit(write_image_folder(root / "imgs", per_class=12), model="scratch:cnn@32", strategy="scratch",
                        epochs=3, out=str(root / "run"), cache_dir=str(root / "cache"))
    run.export()
    return run.path


def _png(size: tuple[int, int] = (40, 40), seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _same(served: dict[str, Any], local: dict[str, Any]) -> None:
    assert served["label"] == local["label"]
    assert served["probabilities"].keys() == local["probabilities"].keys()
    for c, p in local["probabilities"].items():
        assert served["probabilities"][c] == pytest.approx(p, abs=1e-5)


def test_text_predictions_are_the_records_run_predict_gives(text_run: Path) -> None:
    run = load_run(text_run)
    with TestClient(create_app(run)) as client:
        res = client.post("/predict", json={"texts": TEXTS})
    assert res.status_code == 200
    body = res.json()
    assert body["fingerprint"] == run.fingerprint
    local = run.predict(TEXTS)
    assert [p["input"] for p in body["predictions"]] == [r["input"] for r in local]
    for served, mine in zip(body["predictions"], local):
        _same(served, mine)


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_images_as_base64_data_urls_and_uploads_give_run_predict_records(image_run: Path, tmp_path: Path, engine: str) -> None:
    run = load_run(image_run)
    files = sorted((image_run.parent / "imgs" / "left").glob("*.png"))[:2] + sorted((image_run.parent / "imgs" / "right").glob("*.png"))[:1]
    local = run.predict([str(f) for f in files], engine=engine)
    raw = [f.read_bytes() for f in files]
    with TestClient(create_app(run, ServeOptions(engine=engine))) as client:
        as_json = client.post("/predict", json={"images": [_b64(raw[0]), "data:image/png;base64," + _b64(raw[1]), _b64(raw[2])]})
        upload = client.post("/predict", files=[("files", (f.name, r, "image/png")) for f, r in zip(files, raw)])
        meta = client.get("/metadata").json()
    assert as_json.status_code == upload.status_code == 200
    for body in (as_json.json(), upload.json()):
        for served, mine in zip(body["predictions"], local, strict=True):
            _same(served, mine)
    assert [p["input"] for p in upload.json()["predictions"]] == [f.name for f in files]
    assert meta["engine"] == engine and meta["fingerprint"] == run.fingerprint
    assert meta["labels"] == run.classes and meta["strategy"] == "scratch" and meta["model"] == "scratch:cnn@32"
    assert meta["metrics"]["accuracy"] == run.metrics["test"]["accuracy"]
    assert meta["served"]["items"] == 6 and meta["served"]["requests"] == 2


# (what is wrong, the request, the status, words the answer must contain) -- also the table in docs/serve.md
BAD_TEXT_REQUESTS = [
    ("malformed JSON", {"content": b'{"texts": ["a",', "headers": {"content-type": "application/json"}}, 400, "malformed JSON"),
    ("not an object", {"json": ["a", "b"]}, 422, 'under "texts" or "images"'),
    ("texts not a list", {"json": {"texts": "one text"}}, 422, '"texts" must be a non-empty list'),
    ("empty list", {"json": {"texts": []}}, 422, "non-empty list"),
    ("images sent to a text run", {"json": {"images": [_b64(_png())]}}, 422, 'classifies texts: send "texts"'),
    ("a file upload to a text run", {"files": [("files", ("a.png", _png(), "image/png"))]}, 422, "classifies texts"),
    ("wrong content type", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "content type 'text/plain'"),
    ("too many items", {"json": {"texts": ["a"] * 9}}, 413, "9 items in one request; at most 8"),
    ("body over the limit", {"json": {"texts": ["x" * 600_000]}}, 413, "over the limit of 524,288"),
    ("every text over the length limit", {"json": {"texts": ["y" * 5_001]}}, 422, "5,001 characters, over the limit of 5,000"),
    ("a number where a text belongs", {"json": {"texts": [3]}}, 422, "texts[0]: expected a string, got int"),
]


@pytest.mark.parametrize("case", BAD_TEXT_REQUESTS, ids=[c[0] for c in BAD_TEXT_REQUESTS])
def test_a_bad_request_gets_a_4xx_that_names_the_problem_and_the_server_goes_on(text_run: Path, case: tuple) -> None:
    _, request, status, words = case
    options = ServeOptions(max_items=8, max_body_mb=0.5, max_text_chars=5_000)
    with TestClient(create_app(load_run(text_run), options)) as client:
        res = client.post("/predict", **request)
        after = client.post("/predict", json={"texts": TEXTS[:1]})
    assert res.status_code == status, res.text
    assert words in res.json()["detail"]
    assert after.status_code == 200 and after.json()["predictions"][0]["label"] == "sport"


def test_a_body_streamed_without_length_is_cut_at_the_limit(text_run: Path) -> None:
    def chunks():
        yield b'{"texts": ["'
        for _ in range(40):
            yield b"z" * 65_536
        yield b'"]}'

    with TestClient(create_app(load_run(text_run), ServeOptions(max_body_mb=1))) as client:
        res = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert res.status_code == 413 and "over the limit of 1,048,576 bytes" in res.json()["detail"]


def test_bad_images_fail_alone_and_the_pixel_limit_is_read_before_decoding(image_run: Path) -> None:
    good, big = _png((40, 40)), _png((300, 300))
    bomb = _png((64, 64))  # declares 100,000 x 100,000 pixels in its header, without the data
    bomb = bomb[:16] + (100_000).to_bytes(4, "big") * 2 + bomb[24:]
    with TestClient(create_app(load_run(image_run), ServeOptions(max_pixels=50_000))) as client:
        res = client.post("/predict", json={"images": [_b64(good), "%%%", _b64(b"not an image"), _b64(big), _b64(bomb), 7]})
        alone = client.post("/predict", json={"images": [_b64(big)]})
    assert res.status_code == 200
    preds = res.json()["predictions"]
    assert preds[0]["label"] in ("left", "right") and "error" not in preds[0]
    assert "images[1]: not valid base64" in preds[1]["error"]
    assert "images[2]: not a readable image (UnidentifiedImageError" in preds[2]["error"]
    assert "images[3]: image too large: 300x300 = 90,000 pixels, more than the limit of 50,000" in preds[3]["error"]
    assert "images[4]: image too large: 100000x100000" in preds[4]["error"] or "images[4]: not a readable image" in preds[4]["error"]
    assert "images[5]: expected a base64 string, got int" in preds[5]["error"]
    assert alone.status_code == 422 and "image too large" in alone.json()["detail"]
    assert alone.json()["errors"] == [{"input": "images[0]", "error": alone.json()["errors"][0]["error"]}]


def test_an_api_key_guards_predict_and_metadata_but_not_health(text_run: Path) -> None:
    with TestClient(create_app(load_run(text_run), api_key="s3cret")) as client:
        none = client.post("/predict", json={"texts": TEXTS[:1]})
        wrong = client.post("/predict", json={"texts": TEXTS[:1]}, headers={"Authorization": "Bearer guess"})
        meta = client.get("/metadata")
        right = client.post("/predict", json={"texts": TEXTS[:1]}, headers={"Authorization": "Bearer s3cret"})
        health = client.get("/health")
        docs = client.get("/openapi.json")
    assert none.status_code == wrong.status_code == meta.status_code == 401
    assert none.headers["www-authenticate"] == "Bearer" and "Authorization: Bearer" in wrong.json()["detail"]
    assert right.status_code == 200 and health.status_code == 200 and health.json()["status"] == "ready"
    schema = docs.json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(schema)


async def _concurrently(app: Any, texts: list[str]) -> list[httpx.Response]:
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as client:
            return await asyncio.gather(*[client.post("/predict", json={"texts": [t]}) for t in texts])


@pytest.mark.parametrize("window_ms", [0.0, 300.0])
def test_concurrent_requests_are_batched_within_the_window(text_run: Path, window_ms: float) -> None:
    run = load_run(text_run)
    texts = [f"the {w} today" for w in ("goal", "oven", "match", "flour", "team", "sauce", "coach", "spice")]
    app = create_app(run, ServeOptions(window_ms=window_ms, max_batch=32))
    responses = asyncio.run(_concurrently(app, texts))
    server = app.state.server
    assert [r.status_code for r in responses] == [200] * 8
    for r, mine in zip(responses, run.predict(texts), strict=True):
        _same(r.json()["predictions"][0], mine)  # each request gets its own rows back
    assert server.batcher.items == 8
    if window_ms:
        assert server.batcher.batches <= 2  # all eight arrive well within 300 ms
    else:
        assert server.batcher.batches == 8  # no micro-batching: one model call per request


def test_binding_beyond_loopback_without_a_key_warns(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("HEADSTART_QUIET", "0")
    monkeypatch.delenv("HEADSTART_API_KEY", raising=False)
    with pytest.raises(HeadstartError, match="not a headstart run directory"):
        serve(tmp_path / "nothing", host="0.0.0.0", port=1)
    assert "serving on 0.0.0.0, reachable from other machines, with no API key" in capsys.readouterr().err
    with pytest.raises(HeadstartError, match="not a headstart run directory"):
        serve(tmp_path / "nothing", host="127.0.0.1", port=1)
    assert "no API key" not in capsys.readouterr().err


def test_the_cli_defaults_are_the_options_defaults() -> None:
    from headstart.cli import serve_cmd

    cli = {name: p.default.default for name, p in inspect.signature(serve_cmd).parameters.items()
           if hasattr(p.default, "default")}
    for field, value in ServeOptions().__dict__.items():
        if field not in ("engine", "trust_code"):
            assert cli[field] == value, field


# -- a real uvicorn process ---------------------------------------------------------------------------------
def _start(run: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HEADSTART_QUIET": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "headstart", "serve", str(run), "--port", str(port), *flags],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not come up in 120 s")


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight_then_exits(text_run: Path) -> None:
    run = load_run(text_run)
    proc, url = _start(text_run, "--window-ms", "1500")  # the request waits 1.5 s for company: in flight at SIGTERM
    try:
        meta = httpx.get(url + "/metadata").json()
        assert meta["fingerprint"] == run.fingerprint and meta["run"] == text_run.name
        result: dict[str, Any] = {}
        t = threading.Thread(target=lambda: result.update(r=httpx.post(url + "/predict", json={"texts": TEXTS[:2]}, timeout=30)))
        t.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    finally:
        proc.kill()
    assert result["r"].status_code == 200
    for served, mine in zip(result["r"].json()["predictions"], run.predict(TEXTS[:2]), strict=True):
        _same(served, mine)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health", timeout=2)


@pytest.mark.slow
def test_two_workers_each_load_the_model_and_answer(text_run: Path) -> None:
    proc, url = _start(text_run, "--workers", "2", "--api-key", "k")
    try:
        auth = {"Authorization": "Bearer k"}
        answers = [httpx.post(url + "/predict", json={"texts": TEXTS[:2]}, headers=auth, timeout=30) for _ in range(6)]
        workers = {httpx.get(url + "/metadata", headers=auth).json()["worker"] for _ in range(6)}
        refused = httpx.post(url + "/predict", json={"texts": TEXTS[:2]}, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert all(a.status_code == 200 for a in answers) and refused.status_code == 401  # the key reached the workers
    assert len({json.dumps(a.json()["predictions"]) for a in answers}) == 1
    assert proc.pid not in workers  # the model answers from worker processes, not the supervisor
