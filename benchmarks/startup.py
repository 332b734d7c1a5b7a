"""Start-up benchmark (issue 23): how long the first contact takes, as a ratio of ``import torch`` in the same run.

Each command runs in a fresh interpreter 5 times (after one warm-up run that fills the OS file cache); the table
gives the median wall time and its ratio to the median of ``python -c "import torch"`` measured in the same run,
interleaved with the others so that a busy machine slows every row alike.

* ``import headstart``, ``headstart --help``, ``headstart <verb> --help``, ``headstart --version``;
* ``headstart fit`` on a text table (the built-in topics table, MiniLM) up to its first training batch: the
  strategy's ``training_step`` ends the process at its first call (``finetune`` = Lightning, ``linear`` = none);
* two floors for the text fit, libraries only: torch + transformers' BERT model code (transformers imports
  torchvision when it is installed), and the same + Lightning (which imports torchmetrics, and through it
  scipy.signal);
* offline, ``headstart fit ... --model timm:resnet18`` until its error (the hub pointed at a closed local port and
  an empty hub cache): the time to say that the weights cannot be had.

``--only tables`` instead fits each of a set of awkward tables (what spreadsheets and scripts save) with the
real CLI and records what the user saw: the warning or error line, and what the fit decided about the data.

``--before REF`` measures the same commands on an earlier commit too (a temporary git worktree put first on
``PYTHONPATH``, the same virtualenv), for a before/after comparison on one machine.

    python benchmarks/startup.py [--only timings,tables] [--repeats 5] [--before f139d27] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from foundation import ROOT, Section  # noqa: E402

PY = sys.executable
CLI = "from headstart.cli import main; import sys; sys.argv[0] = 'headstart'; main()"
# Ends the process at the first training step of any strategy (Strategy.training_step, which every trained
# strategy calls or inherits), or when a non-training strategy starts extracting (features.run_batches).
FIRST_BATCH = """
import os, sys
import headstart.training.strategies._base as base
step = base.Strategy.training_step
def first(self, batch, ctx):
    os._exit(0)
base.Strategy.training_step = first
from headstart.cli import main
sys.argv[0] = 'headstart'
main()
"""


def commands(table: str, work: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    offline = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(work / "empty-hub")}
    fit = ["fit", table, "--model", "minilm", "--overwrite"]
    return [
        ("`import headstart`", [PY, "-c", "import headstart"], {}),
        ("floor: `import torch` + transformers' BERT model code (what MiniLM needs)",
         [PY, "-c", "import torch; from transformers.models.bert import modeling_bert"], {}),
        ("floor: the same + `import lightning` (what a training fit needs)",
         [PY, "-c", "import torch; from transformers.models.bert import modeling_bert; import lightning"], {}),
        ("`headstart --help`", [PY, "-c", CLI, "--help"], {}),
        ("`headstart --version`", [PY, "-c", CLI, "--version"], {}),
        ("`headstart fit --help`", [PY, "-c", CLI, "fit", "--help"], {}),
        ("`headstart distill --help`", [PY, "-c", CLI, "distill", "--help"], {}),
        ("`headstart rank --help`", [PY, "-c", CLI, "rank", "--help"], {}),
        ("`headstart fit` text table, `finetune`, to its first training batch",
         [PY, "-c", FIRST_BATCH, *fit, "--strategy", "finetune", "--out", str(work / "ft")], {}),
        ("`headstart fit` text table, `linear`, to the end (no training batches)",
         [PY, "-c", CLI, *fit, "--strategy", "linear", "--out", str(work / "lin")], {}),
        ("offline `headstart fit ... --model timm:resnet18` to its error",
         [PY, "-c", CLI, "fit", table, "--model", "timm:resnet18", "--out", str(work / "off")], offline),
    ]


def timed(argv: list[str], env: dict[str, str], cwd: Path | None, strict: bool) -> float:
    """Wall seconds; NaN for a command the measured commit does not have (``strict=False``: an earlier commit)."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    expect_error = "timm:resnet18" in argv
    if (proc.returncode != 0) != expect_error:
        if not strict:
            return float("nan")
        raise SystemExit(f"{' '.join(argv[:4])} ... exit {proc.returncode}:\n{proc.stderr[-2000:]}")
    return wall


def measure(rows: list[tuple[str, list[str], dict[str, str]]], env: dict[str, str], repeats: int,
            cwd: Path | None = None, strict: bool = True) -> tuple[float, dict[str, float]]:
    """Median seconds of ``import torch`` and of each row; runs interleaved, one warm-up each first."""
    base = [PY, "-c", "import torch"]
    everything = [("torch", base, {})] + rows
    for _, argv, extra in everything:
        timed(argv, {**env, **extra}, cwd, strict)
    times: dict[str, list[float]] = {name: [] for name, _, _ in everything}
    for r in range(repeats):
        for name, argv, extra in everything:
            times[name].append(timed(argv, {**env, **extra}, cwd, strict))
        print(f"  round {r + 1}/{repeats} done", flush=True)
    med = {name: statistics.median(v) for name, v in times.items()}
    return med.pop("torch"), med


def awkward_tables(folder: Path) -> list[tuple[str, Path]]:
    """(what it is, file): the tables issue 23 names, and a few of their neighbours."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [(f"the striker scored goal number {i}, late", "sport") if i % 2 else (f"bake the bread, loaf {i}", "food")
            for i in range(60)]

    def write(name: str, text: str, bom: bool = False) -> Path:
        p = folder / name
        p.write_bytes((("\ufeff" if bom else "") + text).encode("utf-8"))
        return p

    def csv_rows(sep: str, fill=lambda i, t, lab: (t, lab)) -> str:
        out = []
        for i, (t, lab) in enumerate(rows):
            t, lab = fill(i, t, lab)
            out.append(f'"{t}"{sep}{lab}' if sep == "," else f"{t}{sep}{lab}")
        return "\n".join(out) + "\n"

    import json

    jsonl = [json.dumps({"text": t, "label": lab}) for t, lab in rows]
    jsonl[16] = '{"text": "bake the bread, "label": "food"}'
    return [
        ("semicolon-separated CSV with a UTF-8 BOM (a spreadsheet's export)", write("semicolon_bom.csv", "text;label\n" + csv_rows(";"), bom=True)),
        ("pipe-separated .txt", write("pipe.txt", "text|label\n" + csv_rows("|"))),
        ("3 rows with a missing label", write("missing_labels.csv", "text,label\n" + csv_rows(",", lambda i, t, lab: (t, "" if i in (4, 25, 47) else lab)))),
        ("2 rows with an empty text", write("empty_texts.csv", "text,label\n" + csv_rows(",", lambda i, t, lab: ("" if i in (8, 9) else t, lab)))),
        ("15 rows with a missing label, --strict", write("strict.csv", "text,label\n" + csv_rows(",", lambda i, t, lab: (t, "" if i % 4 == 0 else lab)))),
        ("a JSONL file with one malformed line", write("bad_line.jsonl", "\n".join(jsonl) + "\n")),
        ("columns named body,author", write("body_author.csv", "body,author\n" + csv_rows(","))),
        ("no row has a label", write("no_labels.csv", "text,label\n" + csv_rows(",", lambda i, t, lab: (t, "")))),
        ("every 'food' row has an empty text", write("empty_class.csv", "text,label\n" + csv_rows(",", lambda i, t, lab: ("" if lab == "food" else t, lab)))),
    ]


def table_report(emit: Section) -> None:
    """Fit each awkward table through the real CLI; record the warning/error line and the decided rows."""
    fast = ["--model", "scratch:bow", "--strategy", "linear", "--cv-folds", "2", "--overwrite"]
    emit("### Awkward tables: what each produced")
    emit()
    emit("`headstart fit TABLE --model scratch:bow --strategy linear --cv-folds 2` on tables written by "
         "`benchmarks/startup.py --only tables` (60 rows, two topics). \"Said\" is the warning or error line, "
         "\"decided\" the closing summary's rows about the data.")
    emit()
    emit("| table | exit | said | decided |")
    emit("|---|---:|---|---|")
    env = {**emit.env, "HEADSTART_QUIET": "0", "COLUMNS": "400"}
    for what, path in awkward_tables(emit.work / "tables"):
        extra = ["--strict"] if "--strict" in what else []
        proc = subprocess.run([PY, "-c", CLI, "fit", str(path), *fast, *extra, "--out", str(emit.work / "t" / path.stem)],
                              env=env, capture_output=True, text=True, cwd=emit.work)
        said = " ".join(ln.strip() for ln in proc.stderr.splitlines() if ln.startswith(("warning:", "error:")))
        said = said.replace(str(emit.work / "tables") + "/", "")
        decided = []
        for ln in proc.stdout.splitlines():
            cells = [c.strip() for c in ln.strip("│ ").split("│")]
            if len(cells) == 2 and cells[0] in ("text column", "label column", "delimiter", "header", "task", "skipped rows"):
                decided.append(f"{cells[0]}: {cells[1]}")
        emit(f"| {what} (`{path.name}`) | {proc.returncode} | {said.replace('|', '/') or '-'} | "
             f"{'; '.join(decided).replace('|', '/') or '-'} |")
    emit()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="timings,tables")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--before", default=None, help="An earlier commit to measure the same way (git worktree).")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    a = ap.parse_args()
    emit = Section("headstart-startup-")
    work = emit.work
    if "timings" not in a.only.split(","):
        emit.header("Start-up benchmark (issue 23), awkward tables", f"python benchmarks/startup.py --only {a.only}")
        table_report(emit)
        emit.append_to(Path(a.out))
        return
    sys.path.insert(0, str(ROOT / "src"))
    from headstart.data import demo_table_path

    table = str(demo_table_path())
    rows = commands(table, work)
    env = {**emit.env, "PYTHONDONTWRITEBYTECODE": "0"}
    print("this commit:", flush=True)
    torch_s, now = measure(rows, env, a.repeats, cwd=work)
    before = None
    if a.before:
        tree = Path(tempfile.mkdtemp(prefix="headstart-before-")) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), a.before], check=True,
                       capture_output=True)
        try:
            print(f"commit {a.before}:", flush=True)
            old_env = {**env, "PYTHONPATH": str(tree / "src")}
            torch_before, old = measure(rows, old_env, a.repeats, cwd=work, strict=False)
            before = (torch_before, old)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)

    emit.header("Start-up benchmark (issue 23)", f"python benchmarks/startup.py --repeats {a.repeats}"
                + (f" --before {a.before}" if a.before else ""))
    emit(f"Median of {a.repeats} fresh interpreters per row (one warm-up each), interleaved with `python -c \"import torch\"`: "
         f"**{torch_s:.2f} s** in this run. Ratio = row / `import torch`. Text table: the built-in topics table "
         "(216 sentences), `--model minilm`.")
    emit()
    head = "| command | seconds | x import torch |"
    sep = "|---|---:|---:|"
    if before:
        head += f" before ({a.before}) s | before x import torch |"
        sep += "---:|---:|"
    emit(head)
    emit(sep)
    for name, _, _ in rows:
        line = f"| {name} | {now[name]:.2f} | {now[name] / torch_s:.2f} |"
        if before:
            b = before[1][name]
            line += " n/a | n/a |" if b != b else f" {b:.2f} | {b / before[0]:.2f} |"
        emit(line)
    emit()
    if "tables" in a.only.split(","):
        table_report(emit)
    emit.append_to(Path(a.out))


if __name__ == "__main__":
    main()
