"""Mutation testing, by hand (issue 28): which changes to the code would the tests notice?

    pip install -e '.[mutation]'
    python benchmarks/mutation.py [--rev HEAD] [--module transferability ...] [--out runs/mutation]

For each module where a silent error costs users most, mutmut changes the code one small edit at a time
(``<`` to ``<=``, a constant, a dropped argument ...) and runs that module's own fast tests against each
change. A mutant the tests fail on is *killed*; one they pass is *survived*: either a gap in the tests or an
equivalent change (same behaviour). Each module runs in its own clean copy of the commit ``--rev``, so the
work tree is never touched and two commits can be compared (before/after a change to the tests).

Writes ``<out>/<rev>/<module>.json`` (counts and the survivors' names) and prints a table; the table for
docs/benchmarks.md is printed by ``--markdown``. The triage of the survivors is docs/mutation.md.

Isolation: torch and onnxruntime crash in a process forked after their threads started, so the modules whose
tests run them (export gate, strategies) use mutmut's fork server.

Scope: where the tests train or export real models, each mutant costs 10-20 s (a fresh process builds the
test's run), so those modules are measured on the functions that decide: ``strategies`` on each method's
defining term (its loss, penalty, weight, schedule, rates, checkpoint state), the ``export gate`` on the
option checks, the per-stage measurement, the clean-up and the choice of check data. ``export_run``'s own
body (the accept/refuse step) has example tests (tests/test_export.py) but no mutation figure: at ~250
mutants it would take hours here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module -> files mutated, its own tests, and (optionally) the functions mutated (mutmut's name globs)
MODULES: dict[str, dict] = {
    "transferability": {"mutate": ["src/headstart/transferability/*"], "tests": ["tests/transferability/"]},
    "data/_images.py": {"mutate": ["src/headstart/data/_images.py"], "tests": ["tests/data/test_images.py"]},
    "data/_tables.py": {"mutate": ["src/headstart/data/_tables.py"],
                        "tests": ["tests/data/test_tables.py", "tests/data/test_awkward_tables.py",
                                  "tests/data/test_table_contracts.py"]},
    "splits": {"mutate": ["src/headstart/data/_dataset.py"], "tests": ["tests/data/"],
               "names": ["headstart.data._dataset.x_stratified_holdout*", "headstart.data._dataset.x_per_class_subset*",
                         "headstart.data._dataset.x_sized_subset*", "headstart.data._dataset.x_make_splits*"]},
    "export gate": {"mutate": ["src/headstart/run/export.py"], "tests": ["tests/test_export.py"], "isolation": "forkserver",
                    "names": ["headstart.run.export.x__stage*", "headstart.run.export.x__check_options*",
                              "headstart.run.export.x__forget_previous*", "headstart.run.export.x_check_inputs*"]},
    "strategies": {"mutate": ["src/headstart/training/strategies/*"], "tests": ["tests/strategies/"], "isolation": "forkserver",
                   "names": [f"headstart.training.strategies.{n}*" for n in (
                       "distill.x_soft_loss", "distill.x_teacher_columns", "l2sp.x_l2sp_penalty", "l2sp.xǁL2SPǁtraining_step",
                       "l2sp.xǁL2SPǁparam_groups", "gradual.xǁGradualǁscheduled", "gradual.xǁGradualǁload_state_dict",
                       "joint.x_target_weight", "joint.xǁJointǁtraining_step", "lp_ft.xǁLPFTǁbase_lr",
                       "lp_ft.xǁLPFTǁhead_lr_mult", "adapt.x_dann_coefficient", "adapt.xǁDANNǁadaptation",
                       "adapt.xǁMMDǁadaptation", "adapt.xǁSelfTrainǁpseudo_labels", "adapt.xǁSelfTrainǁadaptation",
                       "adapt.xǁ_Adaptǁtraining_step")]},
}


def _checkout(rev: str, dest: Path) -> None:
    """The files of commit ``rev`` (not the work tree) into ``dest``."""
    with tempfile.TemporaryFile() as f:
        subprocess.run(["git", "archive", rev], cwd=ROOT, stdout=f, check=True)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            tar.extractall(dest, filter="data")


def _configure(copy: Path, spec: dict) -> None:
    conf = ["", "[tool.mutmut]", 'source_paths = ["src/"]',
            f"only_mutate = {json.dumps(spec['mutate'])}",
            f"pytest_add_cli_args_test_selection = {json.dumps(spec['tests'])}",
            # tests that fit the in-house checkpoints name benchmarks/factories.py beside the tests
            'also_copy = ["benchmarks/"]',
            'pytest_add_cli_args = ["-q", "-p", "no:cacheprovider", "-x"]',
            # torch and onnxruntime are not fork-safe once their threads run: a clean server process forks the workers
            f'process_isolation = "{spec.get("isolation", "fork")}"', ""]
    with open(copy / "pyproject.toml", "a", encoding="utf-8") as f:
        f.write("\n".join(conf))


def _statuses(copy: Path, mutmut: str) -> dict[str, str]:
    out = subprocess.run([mutmut, "results", "--all", "true"], cwd=copy, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+): (.+)$", line)
        if m:
            found[m.group(1)] = m.group(2).strip()
    return found


def _sampled(copy: Path, mutmut: str, env: dict, names: list[str], k: int) -> list[str]:
    """``k`` mutants spread evenly over all those of ``names`` (same code = same choice, at any commit)."""
    subprocess.run([mutmut, "run", "headstart.none-such"], cwd=copy, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # generates the mutants and maps tests to functions; runs none
    pats = [re.compile(re.escape(p).replace(r"\*", ".*") + "$") for p in names]
    every = sorted((m for m in _statuses(copy, mutmut) if any(p.match(m) for p in pats)), key=_natural)
    if len(every) <= k:
        return every
    return [every[round(i * (len(every) - 1) / (k - 1))] for i in range(k)]


def run_module(name: str, rev: str, out: Path, children: int, sample: int | None = None) -> dict:
    spec = MODULES[name]
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    with tempfile.TemporaryDirectory(prefix="headstart-mutation-") as tmp:
        copy = Path(tmp) / "src-copy"
        copy.mkdir()
        _checkout(rev, copy)
        _configure(copy, spec)
        env = {**os.environ, "HEADSTART_QUIET": "1", "MPLCONFIGDIR": str(Path(tmp) / "mpl"),
               "HEADSTART_CACHE_DIR": str(Path(tmp) / "cache"), "TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / "inductor")}
        t0 = time.perf_counter()
        names = spec.get("names", [])
        if sample:
            names = _sampled(copy, mutmut, env, names or ["headstart.*"], sample)
        proc = subprocess.run([mutmut, "run", "--max-children", str(children), *names], cwd=copy, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - t0
        statuses = _statuses(copy, mutmut)
        if names:
            pats = [re.compile(re.escape(p).replace(r"\*", ".*") + "$") for p in names]
            statuses = {k: v for k, v in statuses.items() if any(p.match(k) for p in pats)}
        diffs = {k: subprocess.run([mutmut, "show", k], cwd=copy, capture_output=True, text=True).stdout
                 for k, v in statuses.items() if v in ("survived", "no tests")}
    counts: dict[str, int] = {}
    for v in statuses.values():
        counts[v] = counts.get(v, 0) + 1
    # detected: a test failed (or the mutant hung and timed out); not detected: survived, or no test runs the code
    result = {"module": name, "rev": rev, "seconds": round(seconds, 1), "counts": counts, "total": len(statuses), "sample": sample,
              "kill_rate": round(_rate(counts), 4), "survivors": diffs,
              "returncode": proc.returncode, "stderr_tail": proc.stderr[-2000:], "stdout_tail": proc.stdout[-2000:]}
    dest = out / rev
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{name.replace('/', '_')}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def _natural(name: str) -> tuple[str, int]:
    base, _, n = name.rpartition("__mutmut_")
    return base, int(n) if n.isdigit() else 0


def _rate(counts: dict[str, int]) -> float:
    detected = counts.get("killed", 0) + counts.get("timeout", 0)
    return detected / max(1, detected + counts.get("survived", 0) + counts.get("no tests", 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", default="HEAD", help="the commit whose code and tests are mutated (default HEAD)")
    ap.add_argument("--module", action="append", choices=list(MODULES), help="only these modules (repeatable)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "mutation"))
    ap.add_argument("--children", type=int, default=2, help="mutants tested in parallel")
    ap.add_argument("--sample", type=int, help="test only this many mutants per module, spread evenly over all of "
                                               "them (for the modules whose tests train: hours otherwise)")
    ap.add_argument("--markdown", nargs=2, metavar=("BEFORE", "AFTER"), help="print the docs table from two revs' results")
    ap.add_argument("--survivors", metavar="REV", help="print every mutant not detected at REV, a line each, for docs/mutation.md")
    a = ap.parse_args()
    out = Path(a.out)
    if a.markdown:
        before, after = a.markdown
        print("| module | mutants | detected before | detected after | not detected after |")
        print("|---|---:|---:|---:|---:|")
        for name in MODULES:
            f = f"{name.replace('/', '_')}.json"
            b, c = (json.loads((out / r / f).read_text()) if (out / r / f).is_file() else None for r in (before, after))
            if c is None:
                continue
            rate = (lambda r: f"{100 * _rate(r['counts']):.1f}%" if r else "n/a")
            left = c["counts"].get("survived", 0) + c["counts"].get("no tests", 0)
            tested = f"{c['total']} (a sample)" if c.get("sample") else str(c["total"])
            print(f"| {name} | {tested} | {rate(b)} | {rate(c)} | {left} |")
        return
    if a.survivors:
        for name in MODULES:
            f = out / a.survivors / f"{name.replace('/', '_')}.json"
            if not f.is_file():
                continue
            r = json.loads(f.read_text())
            print(f"\n### {name} ({len(r['survivors'])} not detected)\n")
            print("| mutant | change |")
            print("|---|---|")
            for k, diff in sorted(r["survivors"].items(), key=lambda kv: _natural(kv[0])):
                lines = [ln[1:].strip() for ln in diff.splitlines() if ln[:1] in "-+" and not ln.startswith(("---", "+++"))]
                change = " -> ".join(lines[:2]).replace("|", "\\|").replace("`", "'")
                status = " (no test runs it)" if diff.splitlines()[:1] and diff.splitlines()[0].endswith("no tests") else ""
                print(f"| {k.split('.')[-1].replace('__mutmut_', ' #')}{status} | `{change[:220]}` |")
        return
    rev = subprocess.run(["git", "rev-parse", "--short", a.rev], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    for name in a.module or list(MODULES):
        r = run_module(name, rev, out, a.children, a.sample)
        c = r["counts"]
        print(f"{name:18s} {rev}  mutants {r['total']:5d}  killed {c.get('killed', 0):5d}  survived {c.get('survived', 0):4d}"
              f"  no tests {c.get('no tests', 0):3d}  timeout {c.get('timeout', 0):3d}  kill rate {100 * r['kill_rate']:5.1f}%"
              f"  {r['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
