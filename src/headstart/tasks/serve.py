"""`headstart serve RUN`: an HTTP prediction server for a run (FastAPI + uvicorn).

Endpoints:

* ``POST /predict``: ``{"texts": [...]}`` or ``{"images": [base64, ...]}`` as JSON, or image files as a multipart
  upload; answers ``{"predictions": [...], "fingerprint": ...}`` where each prediction is the record `Run.predict`
  gives (``input``, ``label``, ``probabilities``), or ``{"input", "error"}`` for an item that could not be read.
  One bad item does not fail the others; a request whose every item is bad gets a 4xx naming them.
* ``GET /health``: liveness and readiness (the model is loaded before the port opens).
* ``GET /metadata``: labels, model, strategy, held-out metrics, version, the run's fingerprint (so a client knows
  what answered), the limits in force and what was served so far.
* ``GET /docs``: the OpenAPI page.

Limits, each with its own 4xx: the request body (413), the items per request (413), an image's pixel count read
from its header before anything is decoded (the item fails; no decompression bomb is expanded), a text's length in
characters (the item fails; within it, text is truncated at the model's token limit exactly as in training).

Micro-batching: requests that arrive within ``window_ms`` of each other are run as one batch of at most
``max_batch`` items, in one model thread per worker; ``window_ms=0`` runs each request on its own.

Access: binds to 127.0.0.1 unless told otherwise; an API key (``--api-key`` or ``HEADSTART_API_KEY``) makes
``/predict`` and ``/metadata`` require ``Authorization: Bearer <key>`` (401 otherwise); ``/health`` and ``/docs``
stay open for orchestrators. Binding elsewhere without a key prints a warning.

Lifecycle: each worker process loads the run once, at start-up; on SIGINT/SIGTERM uvicorn stops accepting, the
requests in flight finish (their batches included), then the worker exits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import hmac
import io
import ipaddress
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import warn

try:  # the `serve` extra; at module level because FastAPI reads the endpoints' annotations from this module
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    _MISSING = ""
except ModuleNotFoundError as _e:
    FastAPI = Request = JSONResponse = None  # type: ignore[assignment,misc]
    _MISSING = str(_e.name)
from ..data import TooManyPixels, decode_image
from ..errors import HeadstartError

ENV_KEY = "HEADSTART_API_KEY"
_ENV_OPTIONS = "HEADSTART_SERVE_OPTIONS"  # how the options reach worker processes (uvicorn imports the app there)


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """What a server does with a run; the CLI flags of `headstart serve` are these fields."""

    engine: str | None = None  # torch | onnx; None = the run's default (onnx for a run loaded without its code)
    max_batch: int = 32  # items run as one batch at most
    window_ms: float = 5.0  # how long the first request of a batch waits for others; 0 = no micro-batching
    max_items: int = 64  # items per request
    max_body_mb: float = 16.0  # request body
    max_pixels: int = 40_000_000  # per image, from its header
    max_text_chars: int = 20_000  # per text, before tokenization
    max_queued: int = 1024  # items waiting for the model; beyond this a request gets 503 and should retry
    trust_code: str | None = None  # as for `load`: whether the run's own factory code may be imported

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_items", "max_pixels", "max_text_chars", "max_queued"):
            if int(getattr(self, name)) < 1:
                raise HeadstartError(f"option --{name.replace('_', '-')}: must be at least 1, got {getattr(self, name)}")
        if self.window_ms < 0 or self.max_body_mb <= 0:
            raise HeadstartError("options --window-ms and --max-body-mb: --window-ms must be >= 0 and --max-body-mb > 0")

    @property
    def max_body(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


class MicroBatcher:
    """Gathers the items of concurrent requests into batches for one model thread.

    The first request of a batch waits up to ``window`` seconds (or until ``max_batch`` items are
    queued); everything gathered runs as one call of ``predict``, and each request gets its own rows back. A
    request larger than ``max_batch`` runs whole (``predict`` batches it). ``window=0``: one request per call.
    """

    def __init__(self, predict: Callable[[list[Any]], np.ndarray], max_batch: int, window: float, max_queued: int):
        self.predict, self.max_batch, self.window, self.max_queued = predict, max_batch, window, max_queued
        self.queue: asyncio.Queue[tuple[list[Any], asyncio.Future[np.ndarray]]] = asyncio.Queue()
        # one thread for the model, always the same: calls never overlap, and the allocator keeps one arena
        # (the event loop's shared pool hands calls to any of its threads, and resident memory grew by a GB)
        self.thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="headstart-model")
        self.queued = 0  # items waiting
        self.batches = 0
        self.items = 0

    async def submit(self, items: list[Any]) -> np.ndarray:
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self.queued += len(items)
        await self.queue.put((items, fut))
        return await fut

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = [await self.queue.get()]
            n = len(pending[0][0])
            deadline = loop.time() + self.window
            while self.window > 0 and n < self.max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self.queue.get(), left)
                except asyncio.TimeoutError:
                    break
                pending.append(nxt)
                n += len(nxt[0])
            self.queued -= n
            items = [x for its, _ in pending for x in its]
            try:
                probs = await loop.run_in_executor(self.thread, self.predict, items)
            except Exception as e:  # the model failed on this batch: every request in it is told, the server goes on
                for _, fut in pending:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.batches += 1
            self.items += n
            start = 0
            for its, fut in pending:
                if not fut.done():  # a client that went away leaves a cancelled future
                    fut.set_result(probs[start:start + len(its)])
                start += len(its)


class MemoryTrim:
    """Gives the C allocator's free memory back to the system, at most every ``every`` seconds (glibc only).

    Micro-batches of every size and length leave glibc's heap fragmented: freed, but not returned, so a busy
    server's resident memory crept up without end (texts: +30 MB every 10 s, docs/serve.md). ``malloc_trim``
    returns it; called after a batch, at most once a second, it cost no measurable throughput.
    """

    def __init__(self, every: float):
        self.every, self.last = every, 0.0
        try:
            self.trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
            self.trim = None

    def __call__(self) -> None:
        now = time.monotonic()
        if self.trim is not None and now - self.last >= self.every:
            self.last = now
            self.trim(0)


class _BadRequest(Exception):
    def __init__(self, status: int, detail: str, extra: dict[str, Any] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra or {}


def _decode_one(data: bytes, max_pixels: int) -> np.ndarray | str:
    """An image array, or why this item cannot be read (a string: the item fails, the others go on)."""
    try:
        return decode_image(io.BytesIO(data), max_pixels=max_pixels)
    except TooManyPixels as e:
        return f"image too large: {e} (--max-pixels)"
    except Exception as e:  # PIL raises many types for corrupt data, including its decompression-bomb errors
        why = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(e))[:160]
        return f"not a readable image ({e.__class__.__name__}: {why})"


def _b64(value: Any, where: str) -> bytes | str:
    if not isinstance(value, str):
        return f"{where}: expected a base64 string, got {type(value).__name__}"
    if value.startswith("data:") and "," in value:  # a data URL: data:image/png;base64,....
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        return f"{where}: not valid base64 ({e})"


class Server:
    """The app's state for one run: the loaded model, the batcher, the counters."""

    def __init__(self, run: Any, options: ServeOptions, api_key: str | None):
        self.run, self.options, self.api_key = run, options, api_key or None
        self.engine = options.engine or run.default_engine
        self.batcher = MicroBatcher(self._predict, options.max_batch, options.window_ms / 1000.0, options.max_queued)
        self.requests = 0
        self.failed_items = 0
        self.trimmer = MemoryTrim(every=1.0)
        self.started = time.time()
        try:
            self.version = version("headstart")
        except PackageNotFoundError:
            self.version = "unknown"

    def _predict(self, items: list[Any]) -> np.ndarray:
        probs = self.run.outputs(items, self.options.max_batch, self.engine)
        self.trimmer()
        return probs

    def warm_up(self) -> None:
        """One prediction before the port opens, so that the first client does not pay for lazy set-up."""
        sample = np.zeros((64, 64, 3), np.uint8) if self.run.modality == "image" else "warm-up"
        self._predict([sample])

    def authorize(self, header: str | None) -> None:
        if self.api_key is None:
            return
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise _BadRequest(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")

    def metadata(self) -> dict[str, Any]:
        run = self.run
        return {
            "run": run.path.name, "fingerprint": run.fingerprint, "version": self.version,
            "modality": run.modality, "task": run.task, "labels": list(run.classes),
            **({"tasks": run.tasks} if run.tasks else {}), **({"decisions": run.decisions} if run.decisions else {}),
            "model": run.config.get("model"), "strategy": run.config.get("strategy"),
            "metrics": run.metrics.get("test", {}), "engine": self.engine,
            "limits": {k: v for k, v in dataclasses.asdict(self.options).items() if k not in ("engine", "trust_code")},
            "worker": os.getpid(),
            "served": {"requests": self.requests, "items": self.batcher.items, "batches": self.batcher.batches,
                       "failed_items": self.failed_items, "uptime_s": round(time.time() - self.started, 1)},
        }

    async def read_items(self, request: Any) -> tuple[list[Any], list[str], dict[int, str]]:
        """(decoded items, their names, {position: why}) for the request's texts or images."""
        declared = request.headers.get("content-length")
        limit = self.options.max_body
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _BadRequest(413, f"request body of {int(declared):,} bytes is over the limit of {limit:,} (--max-body-mb)")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _BadRequest(413, f"request body is over the limit of {limit:,} bytes (--max-body-mb)")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            raw, names = await self._multipart(request.headers, bytes(body))
            return await self._images(raw, names)
        if kind not in ("application/json", ""):
            raise _BadRequest(415, f"content type {kind!r}: send application/json ({{\"texts\": [...]}} or "
                                   "{\"images\": [base64, ...]}) or multipart/form-data image files")
        try:
            payload = json.loads(bytes(body))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _BadRequest(400, f"malformed JSON: {e}") from None
        if not isinstance(payload, dict) or not ({"texts", "images"} & set(payload)):
            raise _BadRequest(422, "the JSON body must be an object with a list under \"texts\" or \"images\"")
        key = "texts" if "texts" in payload else "images"
        values = payload[key]
        if not isinstance(values, list) or not values:
            raise _BadRequest(422, f"\"{key}\" must be a non-empty list")
        want = "texts" if self.run.modality == "text" else "images"
        if key != want:
            raise _BadRequest(422, f"this run classifies {self.run.modality}s: send \"{want}\", not \"{key}\"")
        self._count(len(values))
        if key == "texts":
            return self._texts(values)
        raw = [_b64(v, f"images[{i}]") for i, v in enumerate(values)]
        return await self._images(raw, [f"images[{i}]" for i in range(len(values))])

    def _count(self, n: int) -> None:
        if n > self.options.max_items:
            raise _BadRequest(413, f"{n} items in one request; at most {self.options.max_items} (--max-items): split it")

    async def _multipart(self, headers: Any, body: bytes) -> tuple[list[bytes | str], list[str]]:
        from starlette.formparsers import MultiPartParser

        if self.run.modality != "image":
            raise _BadRequest(422, "this run classifies texts: send JSON {\"texts\": [...]}, not file uploads")

        async def once() -> AsyncIterator[bytes]:  # the body, already read within its limit
            yield body

        try:
            form = await MultiPartParser(headers, once(), max_files=self.options.max_items + 1,
                                         max_fields=self.options.max_items + 1, max_part_size=self.options.max_body).parse()
        except Exception as e:  # starlette's MultiPartException, or a malformed body
            raise _BadRequest(400, f"malformed multipart body: {e}") from None
        files = [(k, v) for k, v in form.multi_items() if hasattr(v, "read")]
        if not files:
            raise _BadRequest(422, "the multipart body has no file parts: upload images as files")
        self._count(len(files))
        raw, names = [], []
        for i, (_, f) in enumerate(files):
            raw.append(await f.read())
            names.append(f.filename or f"files[{i}]")
        return raw, names

    def _texts(self, values: list[Any]) -> tuple[list[Any], list[str], dict[int, str]]:
        items, bad = [], {}
        for i, v in enumerate(values):
            if not isinstance(v, str):
                bad[i] = f"texts[{i}]: expected a string, got {type(v).__name__}"
            elif len(v) > self.options.max_text_chars:
                bad[i] = f"texts[{i}]: {len(v):,} characters, over the limit of {self.options.max_text_chars:,} (--max-text-chars)"
            items.append(v)
        return items, [f"text[{i}]" for i in range(len(values))], bad

    async def _images(self, raw: list[bytes | str], names: list[str]) -> tuple[list[Any], list[str], dict[int, str]]:
        max_pixels = self.options.max_pixels

        def decode_all() -> list[np.ndarray | str]:
            return [r if isinstance(r, str) else _decode_one(r, max_pixels) for r in raw]

        decoded = await asyncio.to_thread(decode_all)
        bad = {i: (d if d.startswith(names[i]) else f"{names[i]}: {d}") for i, d in enumerate(decoded) if isinstance(d, str)}
        return decoded, names, bad

    async def predict(self, request: Any) -> dict[str, Any]:
        self.authorize(request.headers.get("authorization"))
        self.requests += 1
        items, names, bad = await self.read_items(request)
        good = [i for i in range(len(items)) if i not in bad]
        self.failed_items += len(bad)
        if not good:
            raise _BadRequest(422, "no item could be read: " + "; ".join(bad[i] for i in sorted(bad)),
                              {"errors": [{"input": names[i], "error": bad[i]} for i in sorted(bad)]})
        if self.batcher.queued + len(good) > self.options.max_queued:
            raise _BadRequest(503, f"{self.batcher.queued} items are waiting for the model (--max-queued): retry shortly")
        probs = await self.batcher.submit([items[i] for i in good])
        records = dict(zip(good, self.run.records([names[i] for i in good], probs)))
        out = [records[i] if i in records else {"input": names[i], "error": bad[i]} for i in range(len(items))]
        return {"predictions": out, "fingerprint": self.run.fingerprint}


def create_app(run: Any, options: ServeOptions | None = None, api_key: str | None = None) -> Any:
    """The FastAPI app serving a loaded `Run` (tests drive it in-process; `serve` runs it under uvicorn)."""
    if FastAPI is None:
        raise HeadstartError(f"serving needs FastAPI and uvicorn ({_MISSING} is missing): pip install 'headstart[serve]'")

    state = Server(run, options or ServeOptions(), api_key)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await asyncio.get_running_loop().run_in_executor(state.batcher.thread, state.warm_up)
        task = asyncio.create_task(state.batcher.run())
        try:
            yield
        finally:  # uvicorn calls this after the requests in flight have finished
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title=f"headstart: {run.path.name}", version=state.version, lifespan=lifespan,
                  description=f"{run.modality} {run.task} classifier ({', '.join(map(str, run.classes[:20]))}); "
                              f"model {run.config.get('model')}, strategy {run.config.get('strategy')}.")
    app.state.server = state

    @app.exception_handler(_BadRequest)
    async def _bad(request: Request, exc: _BadRequest) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else ({"Retry-After": "1"} if exc.status == 503 else None)
        return JSONResponse({"detail": exc.detail, **exc.extra}, status_code=exc.status, headers=headers)

    @app.get("/health", summary="Liveness and readiness")
    async def health() -> dict[str, Any]:
        return {"status": "ready", "fingerprint": run.fingerprint}

    @app.get("/metadata", summary="What answers: labels, model, strategy, metrics, version, fingerprint, limits")
    async def metadata(request: Request) -> dict[str, Any]:
        state.authorize(request.headers.get("authorization"))
        return state.metadata()

    @app.post("/predict", summary="Predict a batch of texts or images", openapi_extra=_PREDICT_DOC)
    async def predict(request: Request) -> dict[str, Any]:
        return await state.predict(request)

    return app


_PREDICT_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "texts": {"type": "array", "items": {"type": "string"}, "description": "for a text run"},
                "images": {"type": "array", "items": {"type": "string", "format": "byte"},
                           "description": "for an image run: base64 (a data: URL is accepted)"}}}},
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        },
    },
    "responses": {"400": {"description": "malformed JSON or multipart body"},
                  "401": {"description": "missing or wrong API key"},
                  "413": {"description": "body or item count over the limit"},
                  "415": {"description": "unsupported content type"},
                  "422": {"description": "wrong modality, or no item could be read"},
                  "503": {"description": "too many items queued; retry"}},
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def app_from_env() -> Any:
    """uvicorn's factory in each worker process: load the run named in the environment, once."""
    from ..run import load_run

    spec = json.loads(os.environ[_ENV_OPTIONS])
    options = ServeOptions(**spec["options"])
    _share_cores(int(spec["workers"]))
    return create_app(load_run(spec["run"], trust_code=options.trust_code), options, os.environ.get(ENV_KEY))


def _share_cores(workers: int) -> None:
    """N workers on one machine: each gets its share of the cores instead of all of them (no oversubscription)."""
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def serve(run_path: str | Path, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          api_key: str | None = None, options: ServeOptions | None = None, graceful_s: float = 30.0) -> None:
    """Load the run (once per worker) and serve it until SIGINT/SIGTERM; blocks."""
    from ..run import load_run

    try:
        import uvicorn
    except ModuleNotFoundError:
        raise HeadstartError("serving needs FastAPI and uvicorn (uvicorn is missing): pip install 'headstart[serve]'") from None

    options = options or ServeOptions()
    if workers < 1:
        raise HeadstartError(f"option --workers: must be at least 1, got {workers}")
    api_key = api_key or os.environ.get(ENV_KEY) or None
    if not is_loopback(host) and api_key is None:
        warn(f"serving on {host}, reachable from other machines, with no API key: anyone who can reach port {port} "
             f"can use the model; pass --api-key (or set {ENV_KEY})")
    run = load_run(run_path, trust_code=options.trust_code)  # fails here, before binding, on a bad run or engine
    engine = options.engine or run.default_engine
    if engine == "onnx":
        from ..run import default_onnx

        default_onnx(run.path)
    common = {"host": host, "port": port, "timeout_graceful_shutdown": graceful_s, "log_level": "warning",
              "access_log": False}
    if workers == 1:
        uvicorn.run(create_app(run, options, api_key), **common)
        return
    del run  # each worker loads its own copy
    os.environ[_ENV_OPTIONS] = json.dumps({"run": str(Path(run_path).resolve()), "workers": workers,
                                           "options": dataclasses.asdict(options)})
    if api_key is not None:
        os.environ[ENV_KEY] = api_key
    uvicorn.run(f"{__name__}:app_from_env", factory=True, workers=workers, **common)


__all__ = ["ENV_KEY", "MicroBatcher", "ServeOptions", "create_app", "is_loopback", "serve"]
