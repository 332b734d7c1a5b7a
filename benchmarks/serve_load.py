"""Load test of `headstart serve` on loopback, bounded in requests and time (issue 21).

    python benchmarks/serve_load.py [--seconds 8] [--max-requests 2000] [--soak 30] [--work DIR]

Two real runs from ../shared/data: texts (``minilm`` + ``linear`` on SST-2) and images (the in-house MobileNetV1
x0.25 checkpoint + ``linear`` on hymenoptera), both exported to ONNX. For each run, engine (torch, onnx) and
batching (micro-batching with a 5 ms window, or none), one server process (`headstart serve`, 1 worker) is
started; async httpx clients then send one-item requests back to back at 1, 8 and 32 concurrent clients, each
cell bounded by ``--seconds`` and ``--max-requests``. Recorded: requests/s, p50/p95/p99 latency, errors (any
answer but 200), and the server's resident memory (sampled every 0.2 s) over the cells and a soak after them,
from the end of an unmeasured warm-up, to show that memory stays flat.

Client and server share the machine's cores, as they would on a one-box deployment; compare the cells as
ratios within one run, not across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from foundation import ROOT, SHARED, Section

CONCURRENCY = (1, 8, 32)


def _runs(work: Path) -> dict[str, tuple[Path, list]]:
    """(run dir, request payloads) for texts and images: fitted once here, exported to ONNX."""
    import headstart
    from headstart.run import load_run

    sst = SHARED / "text" / "sst2"
    images = SHARED / "images" / "hymenoptera"
    lines = [ln.split("\t", 1)[1] for ln in (sst / "test.tsv").read_text(encoding="utf-8").splitlines()[1:] if "\t" in ln]
    files = sorted((images / "val").rglob("*.jpg"))[:100]
    pictures = [{"images": [base64.b64encode(f.read_bytes()).decode()]} for f in files]
    payloads = {"texts (minilm)": [{"texts": [t]} for t in lines[:500]], "images (MobileNetV1 x0.25)": pictures}
    if (work / "text" / "export").is_dir() and (work / "image" / "export").is_dir():  # --work: fitted before
        return {"texts (minilm)": (work / "text", payloads["texts (minilm)"]),
                "images (MobileNetV1 x0.25)": (work / "image", pictures)}
    text = headstart.fit(str(sst / "dev.tsv"), model="minilm", strategy="linear", out=str(work / "text"),
                         cache_dir=str(work / "cache"))
    text.export()
    image = headstart.fit(str(images), model=f"py:{ROOT / 'benchmarks' / 'factories.py'}:mobilenet_v1_025",
                          weights=str(SHARED / "weights" / "mobilenetv1_025_imagenet" / "model_best.pth.tar"),
                          strategy="linear", out=str(work / "image"), cache_dir=str(work / "cache"), trust_code=True)
    load_run(image.path, trust_code=True).export()
    return {"texts (minilm)": (text.path, payloads["texts (minilm)"]), "images (MobileNetV1 x0.25)": (image.path, pictures)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, run: Path, engine: str, window_ms: float):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "headstart", "serve", str(run), "--port", str(self.port), "--engine", engine,
               "--window-ms", str(window_ms), "--trust-code"]
        self.proc = subprocess.Popen(cmd, env={**os.environ, "HEADSTART_QUIET": "1"}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 180
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"server failed: {self.proc.stderr.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise SystemExit("server did not start in 180 s")
            time.sleep(0.2)
        self.ps = psutil.Process(self.proc.pid)
        self.rss = [self.ps.memory_info().rss]  # every 0.2 s from here until close()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.rss.append(self.ps.memory_info().rss)

    def close(self) -> dict:
        self._stop.set()
        self._sampler.join()
        served = httpx.get(self.url + "/metadata").json()["served"]
        self.proc.terminate()
        self.proc.wait(60)
        return served


async def _load(url: str, payloads: list, clients: int, seconds: float, max_requests: int) -> dict:
    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(c: httpx.AsyncClient, seed: int) -> None:
        nonlocal errors, sent
        rng = random.Random(seed)
        while sent < max_requests and time.perf_counter() < stop_at:
            sent += 1
            t = time.perf_counter()
            try:
                r = await c.post("/predict", json=rng.choice(payloads))
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t)
            errors += not ok

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        await c.post("/predict", json=payloads[0])  # connection and first-call costs outside the measurement
        t0 = time.perf_counter()
        await asyncio.gather(*[client(c, i) for i in range(clients)])
        wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {"requests": len(latencies), "rps": len(latencies) / wall, "p50": q[49] * 1e3, "p95": q[94] * 1e3,
            "p99": q[98] * 1e3, "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="time per cell")
    ap.add_argument("--max-requests", type=int, default=2000, help="requests per cell at most")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load before each server's cells")
    ap.add_argument("--soak", type=float, default=30.0, help="seconds at the highest concurrency after the cells")
    ap.add_argument("--work", help="keep the fitted runs here and reuse them on the next call")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    a = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is absent: this benchmark needs the shared data")
    emit = Section("headstart-serve-load-")
    work = Path(a.work) if a.work else emit.work
    os.environ.update(HEADSTART_QUIET="1", HEADSTART_CACHE_DIR=str(work / "cache"))
    emit.header("Serve load test (issue 21)", f"python benchmarks/serve_load.py --seconds {a.seconds:g} --max-requests "
                f"{a.max_requests} --warmup {a.warmup:g} --soak {a.soak:g}")
    emit("One worker; one item per request from async httpx clients on loopback, sharing the machine's cores with the "
         "server. Each cell: `--seconds` or `--max-requests`, whichever ends first. Errors = any answer but 200. "
         "Mean batch = items per model call (the micro-batcher's `/metadata` counters).")
    emit()
    emit("| data | engine | micro-batching | clients | requests | req/s | p50 ms | p95 ms | p99 ms | errors | mean batch |")
    emit("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    memory = [f"Server memory (resident, sampled every 0.2 s): at the end of the warm-up ({a.warmup:g} s unmeasured at "
              f"{CONCURRENCY[-1]} clients), its mean during the cells above, its mean in each half of a {a.soak:g} s soak "
              f"at {CONCURRENCY[-1]} clients after them, and its peak after the warm-up. Flat = the soak's two halves "
              "(the same load) about equal; the cells' mean is lower where their 1- and 8-client phases batch less.", "",
              "| data | engine | micro-batching | warm-up MB | cells, mean MB | soak 1st half MB | soak 2nd half MB | "
              "peak MB |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, (run, payloads) in _runs(work).items():
        for engine in ("torch", "onnx"):
            for window in (5.0, 0.0):
                server = Server(run, engine, window)
                batching = f"{window:g} ms window" if window else "off"
                # the allocator's first growth (each batch size and sequence length once) is not a leak:
                # memory is measured from the end of a warm-up at the highest concurrency
                asyncio.run(_load(server.url, payloads, CONCURRENCY[-1], a.warmup, a.max_requests))
                warm = len(server.rss)
                before = httpx.get(server.url + "/metadata").json()["served"]
                for clients in CONCURRENCY:
                    r = asyncio.run(_load(server.url, payloads, clients, a.seconds, a.max_requests))
                    served = httpx.get(server.url + "/metadata").json()["served"]
                    mean_batch = (served["items"] - before["items"]) / max(1, served["batches"] - before["batches"])
                    before = served
                    emit(f"| {name} | {engine} | {batching} | {clients} | {r['requests']} | {r['rps']:.1f} | "
                         f"{r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['errors']} | {mean_batch:.1f} |")
                cells = len(server.rss)
                asyncio.run(_load(server.url, payloads, CONCURRENCY[-1], a.soak, 10**9))
                server.close()
                mb = [v / 2**20 for v in server.rss]
                half = cells + (len(mb) - cells) // 2
                mean = (lambda xs: sum(xs) / max(1, len(xs)))
                memory.append(f"| {name} | {engine} | {batching} | {mb[warm - 1]:.0f} | {mean(mb[warm:cells]):.0f} | "
                              f"{mean(mb[cells:half]):.0f} | {mean(mb[half:]):.0f} | {max(mb[warm:]):.0f} |")
    emit()
    for line in memory:
        emit(line)
    emit.append_to(Path(a.out))


if __name__ == "__main__":
    main()
