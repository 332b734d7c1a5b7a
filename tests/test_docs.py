"""The documentation site builds, strictly (any warning fails), with its examples executed.

Code blocks marked ``exec="on"`` are run by markdown-exec while the site is built, in a temporary folder
(docs/_exec/hooks.py); an example that raises, or a command that exits with another status than the page
expects, fails the build. The CLI reference is generated from the Typer app (Typer's own docs writer, run in such
a block) and the API reference from the docstrings, so both fail here when they drift from the code. Shell lines
that name the reader's own files are parsed by the CLI's parser; Python blocks are executed, except the other
tools' recipes quoted on coming-from.md.
"""

from __future__ import annotations

import html
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, SUMMARY, open_page

SHELL_FENCE = re.compile(r"^```(?:bash|console|sh|shell)[^\n]*\n(.*?)^```", re.M | re.S)


def executed_blocks() -> dict[str, int]:
    """Pages with blocks executed at build time (examples, and their hidden set-up), and how many each."""
    found = {}
    for page in sorted((ROOT / "docs").rglob("*.md")):
        n = len(re.findall(r'^```python[^\n]*exec="on"', page.read_text(), flags=re.M))
        if n:
            found[str(page.relative_to(ROOT / "docs"))] = n
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    """The site, built once for this module: strictly, its examples executed, in a temporary folder."""
    pytest.importorskip("mkdocs")
    tmp_path = tmp_path_factory.mktemp("docs")
    scratch = tmp_path / "tmp"  # the build's temporary folder (docs/_exec/hooks.py): removed at the end
    scratch.mkdir()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "TMPDIR": str(scratch)}
    t0 = time.perf_counter()
    # not -q: quiet mode drops the warnings that --strict counts
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(tmp_path / "site")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-4000:]
    blocks = executed_blocks()
    commands = re.search(r"(\d+) commands executed in (\d+) s", res.stderr)
    line = (f"docs: built strictly in {seconds:.0f} s; {sum(blocks.values())} executed blocks on {len(blocks)} pages, "
            f"{commands.group(1)} headstart commands in them ({commands.group(2)} s)")
    print(line)
    pytestconfig.stash.setdefault(SUMMARY, []).append(line)  # shown at the end of `make test`, even with -q
    assert len(blocks) >= 15 and int(commands.group(1)) >= 20
    # the examples' folder is gone (the library-wide matplotlib and TorchInductor caches may stay, by design)
    left = [p.name for p in scratch.iterdir() if p.name.startswith("headstart-docs-")] + list(scratch.rglob("runs"))
    assert not left, f"the build left its examples' files behind: {left}"
    return tmp_path / "site"


@pytest.mark.slow
def test_the_site_builds_strict_with_its_examples_executed(site: Path) -> None:
    def text(page: str) -> str:
        return html.unescape(re.sub(r"<[^>]+>", "", (site / page / "index.html").read_text()))

    quick = text("quickstart")
    assert re.search(r"held-out accuracy \d\.\d{3} on \d+ sentences", quick)  # the Python example's own output
    assert 'headstart.fit("demo-text", model="minilm"' in quick  # and the example itself, shown above it
    for page in ("tutorials/linear", "tutorials/finetune", "tutorials/lp-ft", "tutorials/gradual", "tutorials/l2sp",
                 "tutorials/lora", "tutorials/transfer", "tutorials/distill"):
        shown = text(page)
        assert "$ headstart " in shown and re.search(r"held-out accuracy\s+│\s+\d\.\d{4}", shown), page
    assert "model-int8.onnx" in text("tutorials/export")
    assert "recommended: minilm" in text("choose-model")
    assert '"predictions"' in text("serve")  # the server's own answer
    assert "data:image/png;base64," in (site / "tutorials" / "compare" / "index.html").read_text()
    cli = text("reference/cli")
    assert "--strategy" in cli and "explain" in cli and "tune" in cli
    api = text("reference/api")
    assert "Fit a transferred model and write its run directory" in api and ">>> import headstart" in api



@pytest.mark.slow
@pytest.mark.parametrize("page", ["choose-strategy", "tutorials/transfer"])
def test_pages_read_well_in_a_browser(browser, site: Path, page: str) -> None:
    """Two pages in Debian's Chromium (headless, through Playwright) at 1280 px: no console error, no broken
    image, no horizontal scrolling of the page (wide command outputs scroll inside their block).
    ``HEADSTART_SCREENSHOTS=DIR`` saves a full-page screenshot of each (docs/img/docs-*.png)."""
    view, errors = open_page(browser, site / page / "index.html", f"docs-{page.replace('/', '-')}.png")
    assert errors == []
    assert view.evaluate("document.documentElement.scrollWidth") <= 1280
    broken = view.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert broken == 0 and (page != "choose-strategy" or view.evaluate("document.images.length") >= 2)
    assert view.evaluate("document.querySelectorAll('.md-nav__link').length") > 20  # the navigation is there


def options_of(group: object, command: str) -> set[str]:
    """Every ``--flag`` spelling a command of the CLI takes."""
    import typer

    cmd = group.get_command(typer.Context(group, info_name="headstart"), command)
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--trust-code"}

def command_lines(text: str) -> list[str]:
    """The ``headstart ...`` commands of a page's shell blocks: continuation lines joined, prompts, comments,
    optional-part brackets and redirections dropped, one entry per command of a ``;``/``&&``/``|`` chain."""
    found = []
    for block in SHELL_FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line.strip().removeprefix("$ "), posix=True, punctuation_chars=True)
            lexer.whitespace_split = True  # `;`, `&&`, `|` and redirections come out as words of their own
            command: list[str] = []
            redirected = False
            for w in [*lexer, ";"]:
                if w in (";", "&&", "|", "||"):
                    if command[:1] == ["headstart"]:
                        found.append(shlex.join(command))
                    command = []
                elif w in ("<", ">", ">>"):
                    redirected = True  # the redirection and its file are not the command's
                elif redirected:
                    redirected = False
                else:
                    command.append(w.strip("[]"))
    return found


def test_every_command_line_shown_in_the_docs_parses(pytestconfig: pytest.Config) -> None:
    """Shell examples that name the reader's own files (photos/, reviews.csv) cannot run as written; each is
    parsed by the command line's own parser instead: an unknown command or option, a missing argument or a value
    of the wrong type fails here. (Examples on built-in data are executed by the site build.)"""
    import typer

    from headstart.cli import app

    group = typer.main.get_command(app)
    fit_flags = options_of(group, "fit")
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    checked, bad = 0, []
    for page in pages:
        for line in command_lines(page.read_text()):
            args = shlex.split(line)[1:]
            if "--help" in args or "--version" in args or not args:
                continue
            try:
                with group.make_context("headstart", list(args), resilient_parsing=False) as ctx:
                    first = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])  # click 8.2+ / 8.1
                    name, cmd, rest = group.resolve_command(ctx, [*first, *ctx.args])
                    sub = cmd.make_context(name, rest, parent=ctx)
                    # compare, tune, distill, fewshot pass the rest on to fit: it must be fit's
                    unknown = [a.split("=")[0] for a in sub.args if a.startswith("--")]
                    unknown = [a for a in unknown if a not in fit_flags]
                    if unknown:
                        bad.append(f"{page.relative_to(ROOT)}: `{line}`: neither {name} nor fit has {unknown}")
            except typer.TyperException as e:  # the parser's errors (Typer carries its own Click)
                bad.append(f"{page.relative_to(ROOT)}: `{line}`: {e.format_message()}")
            checked += 1
    pytestconfig.stash.setdefault(SUMMARY, []).append(f"docs: {checked} shell command lines parsed by the CLI's parser")
    assert checked > 30, checked
    assert not bad, "\n".join(bad)



def test_commands_and_options_named_in_the_prose_exist(pytestconfig: pytest.Config) -> None:
    """Inline mentions (`headstart tune`, `headstart fit --seed`) are not whole commands; the command each names
    and every ``--option`` in it must exist, so that a renamed flag cannot live on in a sentence."""
    import typer

    from headstart.cli import app

    group = typer.main.get_command(app)
    ctx = typer.Context(group, info_name="headstart")
    fit_flags = options_of(group, "fit")
    names, bad = 0, []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        prose = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
        for span in re.findall(r"`headstart ([a-z][^`]*)`", prose):
            words = span.split()
            cmd = group.get_command(ctx, words[0])
            if cmd is None:
                bad.append(f"{page.relative_to(ROOT)}: `headstart {span}`: no command {words[0]!r}")
                continue
            known = options_of(group, words[0]) | {"--help"}
            if cmd.context_settings.get("ignore_unknown_options"):  # it passes the rest on to fit
                known |= fit_flags
            for w in words[1:]:
                flag = w.strip("[]").split("=")[0]
                if flag.startswith("--") and flag not in known:
                    bad.append(f"{page.relative_to(ROOT)}: `headstart {span}`: {words[0]} has no option {flag}")
            names += 1
    pytestconfig.stash.setdefault(SUMMARY, []).append(f"docs: {names} commands named in the prose checked")
    assert names > 50 and not bad, "\n".join(bad)

def test_every_python_example_in_the_docs_is_executed() -> None:
    """A Python block that is not run could drift from the API unseen: every one is executed at build time, except
    the other tools' recipes that coming-from.md quotes for comparison (their libraries are not dependencies)."""
    quoted = {"coming-from.md"}
    idle = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for fence in re.findall(r"^```(?:python|py|pycon)\b([^\n]*)$", page.read_text(), flags=re.M):
            if 'exec="on"' not in fence and page.name not in quoted:
                idle.append(str(page.relative_to(ROOT)))
    assert not idle, f"Python blocks that are not executed: {idle}"
