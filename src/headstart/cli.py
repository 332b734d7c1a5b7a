"""The ``headstart`` command line: thin wrappers that parse, call the API, print.

``fit``'s flags are generated from `FitConfig`'s fields (same names, same help),
so the CLI, ``--config FILE.yaml`` and the Python API always agree. A user
mistake prints one ``error:`` line (exit code 2); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from ._trust import LEVELS
from .config import FitConfig
from .errors import HeadstartError, did_you_mean
from .training.strategies import get_strategy, list_strategies, option_fields, option_types

TRUST_HELP = ("Import the code a run folder names (a py: factory) when its file's sha256 is the one recorded at fit; "
              "--trust-code=any: even when it is not. Without it such code never runs (docs/security.md).")


class _Commands(TyperGroup):
    """The command group; it lets ``--trust-code`` stand alone (= ``--trust-code=yes``) or take ``any``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        bare = [i for i, a in enumerate(args) if a == "--trust-code" and (i + 1 == len(args) or args[i + 1] not in LEVELS)]
        return super().parse_args(ctx, [("--trust-code=yes" if i in bare else a) for i, a in enumerate(args)])


def _trust_option() -> Any:
    return typer.Option(None, "--trust-code", metavar="[any]", help=TRUST_HELP)


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Transfer learning: choose a pretrained backbone, adapt it, measure it, ship it.")
out = Console()
err = Console(stderr=True)
_state = {"debug": False}


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn toolkit errors into one clear line and exit code 2 (tracebacks with --debug)."""

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except (HeadstartError, FloatingPointError) as e:
            if _state["debug"]:
                raise
            err.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as e:
            err.print(f"[yellow]interrupted[/yellow]: {str(e) or 'stopped by Ctrl-C'}", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        from . import __version__

        out.print(f"headstart {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    _state["debug"] = debug


# -- fit: flags generated from FitConfig ------------------------------------------
def fit_flag_types() -> dict[str, Any]:
    """Every `fit` flag's value type: `FitConfig` fields and the strategies' options (one table for all commands)."""
    hints = typing.get_type_hints(FitConfig)
    types_of = {f.name: hints[f.name] for f in dataclasses.fields(FitConfig) if f.name not in ("data", "options")}
    types_of.update(option_types())
    return types_of


def _fit_signature() -> inspect.Signature:
    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter("data", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[str],
                          default=typer.Argument(None, help=FitConfig.__dataclass_fields__["data"].metadata["help"])),
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                          default=typer.Option(None, "--config", help="YAML file with FitConfig keys; flags override it.")),
        inspect.Parameter("trust_code", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str], default=_trust_option()),
    ]
    types_of = fit_flag_types()

    def flag(f: dataclasses.Field, annotation: Any, default: Any, **kw: Any) -> inspect.Parameter:
        name = "--" + f.name.replace("_", "-")
        decls = [f"{name}/--no-{name[2:]}"] if types_of[f.name] is bool else [name]
        return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                 default=typer.Option(default, *decls, help=f.metadata.get("help", ""), **kw))

    first = ("model", "strategy", "weights", "pretrained", "out")  # what most fits name, at the top of --help
    for f in sorted(dataclasses.fields(FitConfig), key=lambda f: first.index(f.name) if f.name in first else len(first)):
        if f.name in types_of:
            params.append(flag(f, types_of[f.name], f.default))
    # each strategy's own options: a flag each, None = not given (the strategy's default applies)
    for name, (f, _owners) in option_fields().items():
        params.append(flag(f, Optional[types_of[name]], None, rich_help_panel="Strategy options"))
    return inspect.Signature(params)


def parse_fit_flags(args: list[str], command: str = "compare") -> dict[str, Any]:
    """Fit flags passed through another command (``--model X --epochs 3 --no-pretrained --lora-r 4``), typed
    from the same table as `fit`'s own flags."""
    types_of = fit_flag_types()
    found: dict[str, Any] = {}
    i = 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--"):
            raise HeadstartError(f"{command}: unexpected argument {tok!r}; fit options go as --name value")
        key = tok[2:].replace("-", "_")
        negated = key.startswith("no_") and key[3:] in types_of and key not in types_of
        name = key[3:] if negated else key
        if name not in types_of:
            hint = did_you_mean(name, list(types_of), show="--{}").replace("_", "-")
            raise HeadstartError(f"{command}: unknown option {tok}; {hint}see `headstart fit --help`")
        hint = types_of[name]
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        if base is bool:
            found[name] = not negated
            i += 1
            continue
        if i + 1 >= len(args):
            raise HeadstartError(f"{command}: option {tok} needs a value")
        raw = args[i + 1]
        if typing.get_origin(base) is list:  # repeatable (--label-col a --label-col b)
            found.setdefault(name, []).append(raw)
            i += 2
            continue
        try:
            found[name] = base(raw) if base in (int, float) else raw
        except ValueError:
            kind = "an integer" if base is int else "a number"
            raise HeadstartError(f"{command}: option {tok}: {raw!r} is not {kind}") from None
        i += 2
    return found


@_user_errors
def _fit(ctx: typer.Context, data: str | None, config: Path | None, trust_code: str | None, **flags: Any) -> None:
    from .tasks import fit as fitmod

    # Typer may bundle its own click: compare the source by name, not by enum identity.
    opts = option_fields()
    given = {k: v for k, v in flags.items() if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"}
    if config is None:
        given = {k: v for k, v in flags.items() if k not in opts or v is not None}  # every flag given or defaulted
    _print_summary(fitmod.fit(data, config=config, trust_code=trust_code, **given), "headstart fit")


def _print_summary(run: Any, title: str) -> None:
    """The closing summary, then the strategy's own tables (``metrics.json["report"]["sections"]``).

    None: an extra process of a distributed fit, which writes and prints nothing (the first process does)."""
    if run is None:
        return
    from .tasks.fit import summary_rows

    table = Table(title=title, show_header=False)
    for k, v in summary_rows(run):
        table.add_row(k, v)
    out.print(table)
    for sec in run.metrics.get("report", {}).get("sections", []):
        t = Table(title=sec["title"])
        for i, col in enumerate(sec["columns"]):
            t.add_column(str(col), justify="left" if i < 2 else "right")
        for row in sec["rows"]:
            t.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
        out.print(t)
        if sec.get("note"):
            out.print(sec["note"], highlight=False)


_fit.__signature__ = _fit_signature()  # type: ignore[attr-defined]
app.command("fit", help="Fit a transferred model on DATA and write a run directory.")(_fit)


# -- evaluate / predict ---------------------------------------------------------------
ENGINE_HELP = ("torch, or onnx = the file the last `headstart export` accepted (same output). Default: torch, or onnx "
               "for a run whose code is not trusted.")


@app.command("evaluate", help="Metrics of a run on labeled DATA (a folder or table).")
@_user_errors
def evaluate(
    run: Path = typer.Argument(..., help="Run directory written by `headstart fit`."),
    data: str = typer.Argument(..., help="Labeled data: image folder or table file."),
    split: str = typer.Option("all", help="all = every labeled example; test = only the data's reported part."),
    text_col: Optional[list[str]] = typer.Option(None, help="Text column of a table; twice for a pair of texts."),
    label_col: Optional[list[str]] = typer.Option(None, help="Label column of a table; repeat it for several (multilabel 0/1 columns)."),
    engine: Optional[str] = typer.Option(None, help=ENGINE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    trust_code: Optional[str] = _trust_option(),
) -> None:
    from .run import load_run

    r = load_run(run, trust_code=trust_code)
    m = r.evaluate(data, split=split, engine=engine, text_col=text_col, label_col=label_col)
    if as_json:
        print(json.dumps(m))
        return
    table = Table(title=f"evaluate {run} on {data}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in m.items():
        if isinstance(v, float):
            table.add_row(k, f"{v:.4f}")
        elif isinstance(v, int):
            table.add_row(k, str(v))
    out.print(table)


@app.command("predict", help="Predict with a run: image files/folders, table files, or text lines on stdin. JSON lines out.")
@_user_errors
def predict(
    run: Path = typer.Argument(..., help="Run directory written by `headstart fit`."),
    inputs: Optional[list[str]] = typer.Argument(None, help="Images, folders, CSV/TSV files, or texts; '-' or nothing = stdin."),
    text_col: Optional[list[str]] = typer.Option(None, help="Text column of a table input; twice for pairs (default: a pair run's own two)."),
    batch_size: int = typer.Option(64, help="Batch size."),
    engine: Optional[str] = typer.Option(None, help=ENGINE_HELP),
    support: Optional[Path] = typer.Option(None, help="A few labeled examples of the classes to predict (image folder of "
                                           "class folders, or a table): a few-shot run (protonet, maml) adapts to them."),
    trust_code: Optional[str] = _trust_option(),
) -> None:
    from .data import TABLE_EXTENSIONS
    from .run import load_run

    r = load_run(run, trust_code=trust_code)
    items = list(inputs or [])
    for x in items:  # "reviews.csv" that does not exist is a typo far more often than a text to classify
        if r.modality == "text" and Path(x).suffix.lower() in TABLE_EXTENSIONS and " " not in x and not Path(x).is_file():
            raise HeadstartError(f"{x}: no such file; to classify this string as a text, pipe it on stdin")
    if not items or items == ["-"]:
        items = [ln.rstrip("\n") for ln in sys.stdin if ln.strip()]
        if r.modality == "image":
            items = [i.strip() for i in items]
    if not items:
        raise HeadstartError("predict: no inputs given (pass files or folders, or pipe text lines on stdin)")
    for row in r.predict(items, batch_size=batch_size, text_col=text_col, engine=engine, support=support):
        sys.stdout.write(json.dumps(row) + "\n")


@app.command("explain", help="Why a run answered as it did: Grad-CAM or integrated gradients for images (a PNG each), "
             "token attributions for texts (one HTML page), through Captum; written to RUN/explain/. JSON lines out.")
@_user_errors
def explain_cmd(
    run: Path = typer.Argument(..., help="Run directory written by `headstart fit`."),
    inputs: Optional[list[str]] = typer.Argument(None, help="Images, folders, CSV/TSV files, or texts; '-' or nothing = stdin."),
    method: str = typer.Option("auto", help="auto (Grad-CAM where the backbone has a convolution, else ig), gradcam, ig."),
    target: Optional[str] = typer.Option(None, help="The class to explain (default: each input's predicted class)."),
    steps: int = typer.Option(32, help="Integrated-gradients steps along the path from the baseline."),
    text_col: Optional[list[str]] = typer.Option(None, help="Text column of a table input."),
    out: Optional[Path] = typer.Option(None, help="Folder to write to (default RUN/explain)."),
    trust_code: Optional[str] = _trust_option(),
) -> None:
    from .run import load_run

    r = load_run(run, trust_code=trust_code)
    items = list(inputs or [])
    if not items or items == ["-"]:
        items = [ln.rstrip("\n") for ln in sys.stdin if ln.strip()]
    if not items:
        raise HeadstartError("explain: no inputs given (pass files or folders, or pipe text lines on stdin)")
    record = r.explain(items, method=method, target=target, steps=steps, text_col=text_col, out=out)
    for row in record["explanations"]:
        sys.stdout.write(json.dumps(row) + "\n")
    err.print(f"written to {record['folder']}")


@app.command("serve", help="Serve a run over HTTP (FastAPI + uvicorn): POST /predict, GET /health, /metadata, /docs. "
             "Binds to 127.0.0.1 unless --host says otherwise; Ctrl-C/SIGTERM finish the requests in flight, then stop.")
@_user_errors
def serve_cmd(
    run: Path = typer.Argument(..., help="Run directory written by `headstart fit`."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback without --api-key warns."),
    port: int = typer.Option(8000, help="Port."),
    engine: Optional[str] = typer.Option(None, help=ENGINE_HELP),
    workers: int = typer.Option(1, help="Worker processes; each loads the model once and gets its share of the cores."),
    api_key: Optional[str] = typer.Option(None, envvar="HEADSTART_API_KEY", show_envvar=True,
                                          help="Require 'Authorization: Bearer KEY' on /predict and /metadata."),
    max_batch: int = typer.Option(32, help="Most items run through the model as one batch."),
    window_ms: float = typer.Option(5.0, help="Micro-batching: how long a batch waits for concurrent requests (0 = off)."),
    max_items: int = typer.Option(64, help="Most items in one request (413 above)."),
    max_body_mb: float = typer.Option(16.0, help="Largest request body, in MiB (413 above)."),
    max_pixels: int = typer.Option(40_000_000, help="Largest image, in pixels, read from its header before decoding."),
    max_text_chars: int = typer.Option(20_000, help="Longest text, in characters; within it, truncated at the model's "
                                                    "token limit as in training."),
    max_queued: int = typer.Option(1024, help="Items waiting for the model before requests get 503 (retry)."),
    trust_code: Optional[str] = _trust_option(),
) -> None:
    from .tasks.serve import ServeOptions, serve

    options = ServeOptions(engine=engine, max_batch=max_batch, window_ms=window_ms, max_items=max_items,
                           max_body_mb=max_body_mb, max_pixels=max_pixels, max_text_chars=max_text_chars,
                           max_queued=max_queued, trust_code=trust_code)
    err.print(f"serving {run} on http://{host}:{port} (docs: /docs); Ctrl-C stops", highlight=False)
    serve(run, host=host, port=port, workers=workers, api_key=api_key, options=options)


# -- a strategy's own command (e.g. `headstart distill TEACHER DATA --student MODEL`) -------------
def _strategy_command(name: str, spec: dict[str, Any]) -> None:
    """``headstart NAME ARG... DATA --MODEL-FLAG MODEL [fit flags]`` = ``headstart fit DATA --strategy NAME ...``.

    ``spec`` is the strategy's ``command`` declaration: ``help``, ``args`` [(option, help)] that come first as
    arguments, ``data_help``, and ``model_flag`` (flag, help) naming the backbone.
    """
    flag, flag_help = spec["model_flag"]
    args = [a for a, _ in spec["args"]]

    @_user_errors
    def command(ctx: typer.Context, trust_code: str | None = None, **given: Any) -> None:
        from .tasks.fit import fit

        options = parse_fit_flags(list(ctx.args), name)
        for key in ("model", "strategy", *args):
            if key in options:
                raise HeadstartError(f"{name}: --{key} is set by the command itself; see `headstart {name} --help`")
        data, model = given.pop("data"), given.pop(flag)
        _print_summary(fit(data, model=model, strategy=name, trust_code=trust_code, **given, **options), f"headstart {name}")

    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    for arg, arg_help in spec["args"]:
        params.append(inspect.Parameter(arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                                        default=typer.Argument(..., help=arg_help)))
    params.append(inspect.Parameter("data", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                                    default=typer.Argument(..., help=spec["data_help"])))
    params.append(inspect.Parameter(flag, inspect.Parameter.KEYWORD_ONLY, annotation=str,
                                    default=typer.Option(..., f"--{flag}", help=flag_help)))
    params.append(inspect.Parameter("trust_code", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str], default=_trust_option()))
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    app.command(name, help=spec["help"], context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(command)


for _name in list_strategies():
    if get_strategy(_name).command is not None:
        _strategy_command(_name, get_strategy(_name).command)


# -- ship: export -------------------------------------------------------------------
@app.command("export", help="Export a run to ONNX (optionally pruned and/or int8), each file checked against PyTorch "
             "on the run's selection split (the held-out split is reported, never used to decide); written to RUN/export/.")
@_user_errors
def export_cmd(
    run: Path = typer.Argument(..., help="Run directory written by `headstart fit`."),
    format: str = typer.Option("onnx", "--format", help="Export format: onnx."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: onnxruntime quantization (static for images, dynamic for text)."),
    prune: Optional[float] = typer.Option(None, "--prune", help="Zero this fraction of each conv/linear layer's smallest weights (e.g. 0.5)."),
    max_drop: float = typer.Option(1.0, "--max-drop", help="Refuse a file whose selection-split score (accuracy; micro-F1 multilabel; R² regression) is more than this many points (x100) below PyTorch's."),
    force: bool = typer.Option(False, "--force", help="Keep a file even when it loses more than --max-drop."),
    data: Optional[str] = typer.Option(None, "--data", help="Labeled data to check and decide on (default: the run's selection split decides; its held-out split is reported)."),
    calibration: int = typer.Option(256, help="Training images used to calibrate static int8 quantization."),
    trust_code: Optional[str] = _trust_option(),
) -> None:
    from .run import load_run

    record = load_run(run, trust_code=trust_code).export(format=format, quantize=quantize, prune=prune, max_drop=max_drop,
                                                         force=force, data=data, calibration=calibration)
    table = Table(title=f"headstart export {run}: decided on {record['checked_on']}")
    ref = record["pytorch_fp32"]
    name = ref["score_name"].replace("_", " ")
    held = "held_out" in ref
    for col in ("file", "MB", "zip MB", "max |diff|", "agree", name, "Δ pts", *((f"held-out {name}", "Δ pts held-out") if held else ())):
        table.add_column(col, justify="left" if col == "file" else "right")
    table.add_row("PyTorch fp32", "", "", "", "", f"{ref['score']:.4f}", "", *((f"{ref['held_out']['score']:.4f}", "") if held else ()))
    for st in record["stages"]:
        forced = " (forced)" if st.get("forced") else ""
        agree = f"{st['class_agreement']:.4f}" if "class_agreement" in st else "n/a"
        h = st.get("held_out", {})
        table.add_row(st["file"] + forced, f"{st['bytes'] / 1e6:.2f}", f"{st['zipped_bytes'] / 1e6:.2f}", f"{st['max_abs_diff']:.1e}",
                      agree, f"{st['score']:.4f}", f"{0.0 - st['drop_points']:+.2f}",
                      *((f"{h['score']:.4f}", f"{0.0 - h['drop_points']:+.2f}") if held and h else ()))
    out.print(table)
    if held:
        out.print(f"held-out figures: {record['reported_on']}")
    out.print(f"`headstart predict {run} --engine onnx` uses {record['default']}")


# -- choose: rank / distance ---------------------------------------------------------
@app.command("rank", help="Rank candidate backbones for DATA by transferability, before fine-tuning any of them.",
             context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
@_user_errors
def rank_cmd(
    ctx: typer.Context,
    data: str = typer.Argument(..., help="Labeled target data: image folder, table file or built-in name."),
    models: list[str] = typer.Option(..., "--models", "-m",
                                     help="Candidates: --models A B C (or A,B,C); MODEL@WEIGHTS_FILE for local weights."),
    metric: str = typer.Option("auto", "--metric", help="logme, hscore, leep, nce, knn, linear, sfda, ncti, etran, transrate, "
                               "gbc, pactran, proxy (comma-separated), all, or auto: the goal's score and LogME."),
    goal: str = typer.Option("finetune", help="What the winner is for: finetune (recommend by NCTI) or linear (by LogME)."),
    then_fit: Optional[str] = typer.Option(None, "--then-fit", help="Then fit the winner with this strategy (e.g. finetune)."),
    seed: int = typer.Option(0, help="Random seed (the same split as `headstart fit --seed`)."),
    test: Optional[str] = typer.Option(None, help="A separate reported file or folder (never scored, as in `headstart fit --test`)."),
    test_fraction: float = typer.Option(0.2, help="Held out, never scored (as in `headstart fit`)."),
    proxy_epochs: int = typer.Option(2, help="Epochs of the short fine-tuning proxy."),
    proxy_per_class: int = typer.Option(200, help="At most this many training examples per class for the proxy."),
    train_size: Optional[int] = typer.Option(None, help="Use only this many training examples (as `headstart fit --train-size`)."),
    per_class: int = typer.Option(50, help="Score at most this many examples per class (a seeded sample of the training part; 0: all)."),
    intervals: int = typer.Option(20, help="Half-sample bootstrap rounds for the recommending score's 90% interval (0: none)."),
    text_col: Optional[list[str]] = typer.Option(None, help="Text column of a table; twice for a pair of texts."),
    label_col: Optional[list[str]] = typer.Option(None, help="Label column of a table; repeat it for several (multilabel 0/1 columns)."),
    task_type: str = typer.Option("auto", help="What a label is: auto, binary, multiclass, multilabel, regression "
                                  "(LogME and the proxy score every task; the other scores need classes)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where rank.json/csv/png and report.html go (default runs/rank-<data>)."),
    overwrite: bool = typer.Option(False, help="Replace an existing ranking folder."),
    trust_code: Optional[str] = _trust_option(),
) -> None:
    from .tasks.rank import default_out, rank

    cands = [m for spec in [*models, *ctx.args] for m in spec.split(",") if m.strip()]
    stray = [a for a in ctx.args if a.startswith("-")]
    if stray:
        raise HeadstartError(f"rank: unknown option {stray[0]}; see `headstart rank --help`")
    if then_fit is not None and ctx.get_parameter_source("goal").name != "COMMANDLINE":
        goal = "finetune" if get_strategy(then_fit).trains else "linear"  # a frozen-feature probe: rank by LogME
    target = out_dir or default_out(data)
    df = rank(data, cands, metrics=metric, goal=goal, seed=seed, test=test, test_fraction=test_fraction, proxy_epochs=proxy_epochs,
              proxy_per_class=proxy_per_class, train_size=train_size, per_class=per_class, intervals=intervals,
              text_col=text_col, label_col=label_col, task_type=task_type, out=target, overwrite=overwrite,
              trust_code=trust_code)
    names = df.attrs["metrics"]
    by = df.attrs["by"]
    spread = bool(df["low"].notna().any())
    table = Table(title=f"headstart rank: {data} (higher is better)")
    for col in ("rank", "candidate", *names, *([f"{by} 90%"] if spread else []), "dim", "extract s", "seconds"):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for cand, r in df.iterrows():
        cells = [f"{r[m]:.4f}" if r[m] == r[m] else "n/a" for m in names]
        if spread:
            cells.append(f"{r['low']:.3f}..{r['high']:.3f}" if r["low"] == r["low"] else "n/a")
        table.add_row(str(r["rank"]), str(cand), *cells, str(r["dim"]), f"{r['extract_s']:.1f}", f"{r['seconds']:.1f}")
    out.print(table)
    if df.attrs.get("overlap"):
        out.print(f"[yellow]{df.attrs['overlap']}[/yellow]")
    out.print(f"recommended: [bold]{df.attrs['recommended']}[/bold] (by {df.attrs['by']}, goal {df.attrs['goal']}); "
              f"{df.attrs['seconds']:.1f} s; report: {target}/report.html")
    if then_fit is not None:
        from .tasks.fit import fit

        run = fit(data, model=df.attrs["recommended_model"], weights=df.attrs["recommended_weights"], strategy=then_fit, seed=seed,
                  test=test, test_fraction=test_fraction, text_col=text_col, label_col=label_col, task_type=task_type, trust_code=trust_code)
        _print_summary(run, "headstart fit (the recommended candidate)")


@app.command("extract", help="Fill the feature cache for DATA under --model, as `fit --strategy linear` would read it "
             "(--pool avg: as rank and distance read it). `--shard i/k` in k processes fills one entry together.")
@_user_errors
def extract_cmd(
    data: str = typer.Argument(..., help="Folder or table (labels as for fit)."),
    model: str = typer.Option("auto", help="Backbone, as for fit."),
    shard: str = typer.Option("0/1", help="This process's part, i/k (0-based); the last of the k to finish joins them."),
    pool: str = typer.Option("auto", help="auto = the pooling `linear` uses; avg = the one rank and distance use."),
    weights: Optional[str] = typer.Option(None, help="Weights file for the backbone, as for fit."),
    batch_size: int = typer.Option(64, help="Batch size."),
    cache_dir: Optional[str] = typer.Option(None, help="Feature cache folder (default: runs/.cache, or $HEADSTART_CACHE_DIR)."),
    text_col: Optional[list[str]] = typer.Option(None, help="Text column of a table; twice for a pair of texts."),
    label_col: Optional[list[str]] = typer.Option(None, help="Label column of a table; repeat it for several (multilabel 0/1 columns)."),
    seed: int = typer.Option(0, help="Seed (a from-scratch backbone's weights), as for fit."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    from .tasks.extract import extract_features

    r = extract_features(data, model=model, shard=shard, pool=pool, weights=weights, batch_size=batch_size,
                         cache_dir=cache_dir, text_col=text_col, label_col=label_col, seed=seed)
    if as_json:
        print(json.dumps(r))
        return
    table = Table(title=f"extract {data}")
    table.add_column("")
    table.add_column("")
    for k, v in r.items():
        table.add_row(k.replace("_", " "), str(v))
    out.print(table)


@app.command("distance", help="How far apart two datasets are in one backbone's features (one dataset: two halves of it).")
@_user_errors
def distance_cmd(
    source: str = typer.Argument(..., help="Source data (folder, table or built-in name)."),
    target: Optional[str] = typer.Argument(None, help="Target data; omitted = two random halves of SOURCE (the null case)."),
    model: str = typer.Option(..., "--model", help="Backbone whose feature space is used (any model string)."),
    weights: Optional[str] = typer.Option(None, help="Local weights file for the backbone."),
    permutations: int = typer.Option(200, help="Permutations of the MMD tests."),
    seed: int = typer.Option(0, help="Random seed (subsamples, halves, permutations)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where distance.json, domains.png and report.html go."),
    overwrite: bool = typer.Option(False, help="Replace an existing distance folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    from .tasks.distance import default_out, distance

    target_dir = out_dir or default_out(source, target, model)
    res = distance(source, target, model=model, weights=weights, permutations=permutations, seed=seed,
                   out=target_dir, overwrite=overwrite)
    if as_json:
        print(json.dumps(res))
        return
    table = Table(title=f"{res['source']} vs {res['target']} in {model} features ({res['n_source']} / {res['n_target']})")
    for col in ("measure", "value", "meaning"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for k, v in res["distances"].items():
        table.add_row(k, f"{v:.4g}", res["help"][k])
    out.print(table)
    out.print(f"plot and report: {target_dir}/domains.png, {target_dir}/report.html ({res['seconds']:.1f} s)")


# -- compare -------------------------------------------------------------------------
@app.command("compare", help="Fit several strategies at several label budgets (same seed and split): table + data-efficiency plot. "
             "Any `fit` option may follow (e.g. --model timm:resnet18 --epochs 5 --lora-r 4).",
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@_user_errors
def compare_cmd(
    ctx: typer.Context,
    data: str = typer.Argument(..., help="Labeled data: image folder, table file or built-in name."),
    strategies: Optional[str] = typer.Option(None, "--strategies", help="Comma-separated strategies (default: those "
                                             "marked for comparison in `headstart strategies`)."),
    budgets: str = typer.Option("5,20,all", "--budgets", help="Labeled examples per class, comma-separated; 'all' = every one."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where runs/, compare.csv, data_efficiency.png and report.html go."),
    overwrite: bool = typer.Option(False, help="Replace an existing comparison folder."),
    resume: bool = typer.Option(False, help="Continue an interrupted comparison: finished runs are reused."),
    trust_code: Optional[str] = _trust_option(),
) -> None:
    from .tasks.compare import compare, default_out

    options = parse_fit_flags(list(ctx.args))
    target = out_dir or default_out(data)
    df = compare(data, strategies, budgets, out=target, overwrite=overwrite, resume=resume, trust_code=trust_code, **options)
    score = str(df["score_name"].iloc[0]).replace("_", " ") if len(df) else "accuracy"
    table = Table(title=f"headstart compare: {data} (held-out {score})")
    for col in ("strategy", "per class", score, "macro F1", "wall s", "trainable", "% backbone"):
        table.add_column(col, justify="left" if col == "strategy" else "right")

    def num(v: Any) -> str:
        return "n/a" if v is None or v != v else f"{v:.4f}"

    for _, r in df.iterrows():
        table.add_row(r["strategy"], f"{r['labels_per_class']:g}", num(r["score"]), num(r["macro_f1"]),
                      f"{r['wall_seconds']:.1f}", f"{r['trainable_parameters']:,}", f"{r['trainable_percent']:.2f}")
    out.print(table)
    out.print(f"table, plot and report: {target}/compare.csv, {target}/data_efficiency.png, {target}/report.html")


# -- fewshot -------------------------------------------------------------------------
@app.command("fewshot", help="Few-shot: frozen prototypes, a linear probe per episode, ProtoNet and MAML/FOMAML/ANIL "
             "on the same meta-test episodes of classes never trained on: accuracy with 95% intervals, table, plot, report. "
             "Any `fit` option may follow (e.g. --model minilm --epochs 3 --train-episodes 300 --class-split 5,0,5).",
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@_user_errors
def fewshot_cmd(
    ctx: typer.Context,
    data: str = typer.Argument(..., help="Labeled data with many classes: image folder, table file or built-in name."),
    ways: int = typer.Option(5, help="Classes per episode."),
    shots: str = typer.Option("1,5", help="Support examples per class, comma-separated (one row per method and value)."),
    episodes: int = typer.Option(600, help="Meta-test episodes per shot count (the same for every method)."),
    queries: int = typer.Option(15, help="Query examples per class in an episode."),
    methods: str = typer.Option("prototypes,linear,protonet,maml,fomaml,anil", help="Comma-separated methods."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where runs/, fewshot.csv, fewshot.png and report.html go."),
    overwrite: bool = typer.Option(False, help="Replace an existing few-shot folder."),
    resume: bool = typer.Option(False, help="Continue an interrupted comparison: finished runs are reused."),
    trust_code: Optional[str] = _trust_option(),
) -> None:
    from .tasks.fewshot import fewshot

    options = parse_fit_flags(list(ctx.args), "fewshot")
    target = out_dir or Path("runs") / f"fewshot-{Path(data.rstrip('/')).stem}"
    rows = fewshot(data, methods=methods, ways=ways, shots=shots, episodes_n=episodes, queries=queries, out=target,
                   overwrite=overwrite, resume=resume, trust_code=trust_code, **options)
    table = Table(title=f"headstart fewshot: {data} ({ways}-way, {episodes} meta-test episodes)")
    for col in ("method", "shots", "accuracy", "95% interval", "wall s"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(r["method"], str(r["shots"]), f"{r['accuracy']:.4f}", f"± {r['ci95']:.4f}", f"{r['wall_seconds']:.1f}")
    out.print(table)
    out.print(f"table, plot and report: {target}/fewshot.csv, {target}/fewshot.png, {target}/report.html")


@app.command("tune", help="Search a strategy's hyperparameters with Optuna (TPE), scored on the selection split, then "
             "refit the best and score it once on the reported split. Workers sharing --storage and --study share the "
             "search. Any `fit` option may follow (e.g. --model minilm --epochs 3).",
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@_user_errors
def tune_cmd(
    ctx: typer.Context,
    data: str = typer.Argument(..., help="Labeled data: image folder, table file or built-in name."),
    strategy: str = typer.Option("finetune", help="The strategy whose search space is searched (`headstart strategies`)."),
    trials: int = typer.Option(20, help="Trials this worker runs (0: only refit the best so far)."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage: postgresql://... (workers on several machines), "
                                          "journal:FILE (several workers on one machine), sqlite:///... (default: "
                                          "OUT/study.db)."),
    study: Optional[str] = typer.Option(None, help="Study name (default: the --out folder's name)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where trials/, best/ and tune.json go."),
    refit: bool = typer.Option(True, help="Fit the best trial's values and the default configuration again (OUT/best, "
                               "OUT/default), each scored once on the reported split."),
    cv: Optional[int] = typer.Option(None, "--cv", help="Score each trial by K-fold cross-validation on the training part "
                                     "(mean log-loss) instead of the selection split."),
    prune: bool = typer.Option(True, help="Stop a trial whose selection loss falls behind the median of earlier ones."),
    refit_seeds: int = typer.Option(1, help="Seeds of each refit (best and default): mean ± std of the held-out score."),
) -> None:
    from .tasks.tune import tune

    options = parse_fit_flags(list(ctx.args), "tune")
    r = tune(data, trials=trials, strategy=strategy, storage=storage, study=study, out=out_dir, refit=refit, cv=cv,
             prune=prune, refit_seeds=refit_seeds, **options)
    table = Table(title=f"headstart tune: {data}, {r['strategy']} (study {r['study']}; {r['objective']})")
    for col in ("trial", "state", "log-loss", "selection score", "values"):
        table.add_column(col, justify="left" if col in ("state", "values") else "right")
    for t in sorted(r["trials"], key=lambda t: (t["value"] is None, t["value"] or 0.0)):
        acc = t["selection_score"]
        table.add_row(str(t["number"]), t["state"], "" if t["value"] is None else f"{t['value']:.4f}",
                      "" if acc is None else f"{acc:.4f}", ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                                   for k, v in t["params"].items()))
    out.print(table)
    if "refit" in r:
        test = r["refit"]["test"]
        acc = test.get("score")
        out.print(f"best: trial {r['best']['number']}; refitted into {r['refit']['run']}"
                  + (f", held-out {test.get('score_name', 'score').replace('_', ' ')} {acc:.4f}" if acc is not None else ""))
        d = r["default"]["test"].get("score")
        if d is not None:
            out.print(f"default configuration: held-out {d:.4f} ({r['default']['run']})")
    out.print(f"record: {r['path']}/tune.json; best values: {r['path']}/best.yaml; study report: {r['path']}/report.html")


# -- listing and demo ---------------------------------------------------------------
@app.command("backbones", help="List the backbone families (model-string prefixes).")
def backbones() -> None:
    from .backbones import list_backbones

    for p in list_backbones():
        out.print(p)


@app.command("strategies", help="List the adaptation strategies.")
def strategies() -> None:
    table = Table("strategy", "what it does", "trains", "in compare by default")
    for s in list_strategies():
        cls = get_strategy(s)
        table.add_row(s, cls.summary, "yes" if cls.trains else "no", "yes" if cls.compared_by_default else "")
    out.print(table)


@app.command("demo", help="Offline demo: pretrained MiniLM vs a from-scratch baseline at a few labels per class.")
@_user_errors
def demo(
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", help="Where the demo's runs are written."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    import os

    from .tasks.demo import run_demo

    os.environ.setdefault("HEADSTART_QUIET", "1")
    err.print("headstart demo: 6-topic sentence classification, 30% held out; fitting 9 models offline ...")
    results = run_demo(out_dir, seed=seed)
    table = Table(title="transfer learning on a small text set (held-out accuracy)")
    for col in ("labels/class", "labeled n", "model", "strategy", "accuracy", "seconds"):
        table.add_column(col, justify="right" if col in ("accuracy", "seconds", "labeled n") else "left")
    for r in results:
        table.add_row(r.budget, str(r.n_labeled), r.model, r.strategy, f"{r.accuracy:.3f}", f"{r.seconds:.1f}")
    out.print(table)
    out.print(f"runs: {out_dir}/  (each has report.html, metrics.json, model.safetensors)")


# -- the machine and the disk ---------------------------------------------------------------
@app.command("info", help="Versions, threads, device, native bf16, and where the caches are.")
def info_cmd(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    import os
    import platform
    from importlib import metadata

    import torch

    from . import __version__
    from ._perf import bf16_supported
    from .backbones._hub import cache_dir as hub_cache
    from .features import default_cache_dir

    def version_of(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    facts: dict[str, Any] = {"headstart": __version__, "python": platform.python_version()}
    for dist in ("torch", "torchvision", "lightning", "timm", "transformers", "peft", "scikit-learn", "onnxruntime"):
        facts[dist] = version_of(dist)
    facts.update({
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu",
        "native bf16": bf16_supported(),
        "feature cache": str(default_cache_dir().resolve()) + "  (HEADSTART_CACHE_DIR; `headstart cache`)",
        "hub cache": hub_cache() + "  (HF_HUB_CACHE / HF_HOME)",
        "torch compile cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR", ""),
        "matplotlib cache": os.environ.get("MPLCONFIGDIR", ""),
    })
    if as_json:
        print(json.dumps(facts))
        return
    table = Table(title="headstart info", show_header=False)
    for k, v in facts.items():
        table.add_row(k, "yes" if v is True else "no" if v is False else str(v))
    out.print(table)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        return platform.processor() or platform.machine()


def _bytes(text: str) -> int:
    """``500MB``, ``2G``, ``1.5GiB``, ``31337`` (bytes) -> bytes (powers of 1024)."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if m is None:
        raise HeadstartError(f"option --max-size: {text!r} is not a size; give e.g. 500MB or 2GB")
    return round(float(m.group(1)) * 1024 ** "bkmgt".index(m.group(2) or "b"))


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # pragma: no cover


@app.command("cache", help="List the cache: extracted features and decoded images (size, what each entry was made "
             "from, last use); --clear or --max-size to free disk.")
@_user_errors
def cache_cmd(
    clear: bool = typer.Option(False, "--clear", help="Remove every entry."),
    max_size: Optional[str] = typer.Option(None, "--max-size", help="Remove the least recently used entries until the "
                                           "cache holds at most this much (e.g. 2GB)."),
    cache_dir: Optional[Path] = typer.Option(None, "--dir", help="The cache folder (default: HEADSTART_CACHE_DIR, "
                                             "else runs/.cache)."),
) -> None:
    import datetime as dt

    from .data import store_entries
    from .features import cache_entries, default_cache_dir, remove_entries, trim_cache

    folder = cache_dir or default_cache_dir()
    if clear and max_size is not None:
        raise HeadstartError("cache: give --clear or --max-size, not both")

    def entries_now() -> list[dict]:  # features and decoded images, most recently used first
        return sorted(cache_entries(folder) + store_entries(folder), key=lambda e: -e["last_used"])

    if clear:
        gone = entries_now()
        out.print(f"removed {len(gone)} entries, {_size(remove_entries(gone))} freed, from {folder}")
        return
    if max_size is not None:
        gone = trim_cache(_bytes(max_size), entries_now())
        out.print(f"removed {len(gone)} least recently used entries, {_size(sum(e['bytes'] for e in gone))} freed")
    entries = entries_now()
    when = lambda t: dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")  # noqa: E731
    table = Table(title=f"cache {folder}: {len(entries)} entries, {_size(sum(e['bytes'] for e in entries))}")
    for col in ("key", "size", "model", "data", "what", "rows x dim", "created", "last used"):
        table.add_column(col, justify="right" if col in ("size", "rows x dim") else "left")
    for e in entries:
        table.add_row(e["key"][:12], _size(e["bytes"]), e["model"] or "-", _tail(e["source"] or "?"), e["tag"] or "features",
                      "x".join(str(v) for v in e["shape"]), when(e["created"]), when(e["last_used"]))
    out.print(table)


def _tail(path: str, keep: int = 48) -> str:
    """A long path cut at its start, not its end: the file's name is what tells two entries apart."""
    return path if len(path) <= keep else "…" + path[-(keep - 1):]


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
