"""A ``py:`` factory's code: what a fit records about it, and the check before a run imports it again.

At fit time the user names the factory (``py:fac.py:net``): it runs, and its record goes into the spec
(and so into the run's ``model.json``): ``module`` and ``factory`` as named, the resolved ``file`` and
that file's ``sha256``. A file factory is executed from exactly the bytes that were hashed.

Loading a run rebuilds the network from that record, and this is the one place where a run folder could
make headstart run code. `admit` decides, before anything is imported:

* under trust level ``no`` (the default) it refuses, naming the file that would be imported and its hash;
* under ``yes`` it accepts the file only when its sha256 is the recorded one; under ``any``, whatever it is;
* a module of Python's standard library (``os:system``) is never a model factory and is always refused.

Where the file is looked for: a file factory first at its path relative to the run folder (recorded as
``relative`` when the run was written, so a project moved with its runs still loads), then at the recorded
absolute path. A module factory (``py:pkg.models:net``) is found the way Python would import it (the
current folder, then ``sys.path``), located without executing anything; after the import the module's file
must be the one that was checked. The hash covers the factory's own file, not the modules it imports.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

from .._trust import current
from ..errors import ConfigError, HeadstartError, UntrustedCode

_NOT_FACTORIES = frozenset(sys.stdlib_module_names) | {"builtins", "__main__"}
_RAN: set[tuple[str, str]] = set()  # (file, sha256) already run in this process: said once


def sha256_of(data: bytes) -> str:
    import hashlib  # here: `import headstart` need not load OpenSSL

    return hashlib.sha256(data).hexdigest()


def split_target(target: str, where: str = "option --model") -> tuple[str, str]:
    """``"fac.py:net"`` -> ("fac.py", "net"); the module may itself hold ':' (a Windows drive)."""
    module, sep, factory = str(target).rpartition(":")
    if not sep or not module or not factory.isidentifier():
        raise ConfigError(f"{where}: py:{target} must look like py:<module or file.py>:<factory function>")
    return module, factory


def find_module_file(module: str) -> Path | None:
    """The file ``import module`` would load (the current folder first, then ``sys.path``), found without
    executing any package's ``__init__``; None when it is not there or not a plain source file."""
    search: list[str] | None = [str(Path.cwd()), *sys.path]
    spec = None
    parts = module.split(".")
    for i in range(len(parts)):
        if search is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations) if spec.submodule_search_locations else None
    origin = getattr(spec, "origin", None)
    return Path(origin).resolve() if origin and origin.endswith(".py") else None


def _exec_source(data: bytes, path: Path) -> types.ModuleType:
    """A module made by executing exactly ``data`` (the bytes whose hash was taken) as ``path``."""
    name = f"headstart_user_{path.stem}_{sha256_of(str(path).encode())[:8]}"
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    module.__file__ = str(path)
    sys.modules[name] = module  # dataclasses and pickling look classes up by module name
    try:
        exec(compile(data, str(path), "exec"), module.__dict__)  # noqa: S102 - the user's factory, named or trusted
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _factory_of(module: types.ModuleType, name: str, factory: str) -> Any:
    fn = getattr(module, factory, None)
    if not callable(fn):
        raise HeadstartError(f"option --model: {name} has no callable {factory!r}")
    return fn


def import_named(target: str) -> tuple[Any, dict[str, Any]]:
    """Fit time: import the factory the user named and return (factory, its code record)."""
    module, factory = split_target(target)
    if module.endswith(".py"):
        path = Path(module).expanduser().resolve()
        if not path.is_file():
            raise HeadstartError(f"option --model: factory file {path} does not exist")
        data = path.read_bytes()
        mod = _exec_source(data, path)
    else:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise HeadstartError(f"option --model: cannot import {module!r} ({e}); run from its folder or install it") from None
        if not getattr(mod, "__file__", None):
            raise HeadstartError(f"option --model: {module} has no source file to record; put the factory in a .py file")
        path = Path(mod.__file__).resolve()
        data = path.read_bytes()
    record = {"module": module, "factory": factory, "file": str(path), "sha256": sha256_of(data)}
    _RAN.add((record["file"], record["sha256"]))
    return _factory_of(mod, module, factory), record


def _candidates(code: dict[str, Any], run_dir: Path | None) -> list[Path]:
    module = str(code["module"])
    if not module.endswith(".py"):
        found = find_module_file(module)
        return [found] if found is not None else []
    out = []
    rel = code.get("relative")
    if run_dir is not None and isinstance(rel, str) and rel and not Path(rel).is_absolute():
        out.append((run_dir / rel).resolve())
    if isinstance(code.get("file"), str):
        out.append(Path(code["file"]).expanduser())
    return out


def code_record(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec's code record; a run written before records were kept gets one without a hash."""
    code = spec.get("code")
    if isinstance(code, dict) and isinstance(code.get("module"), str) and isinstance(code.get("factory"), str):
        return code
    module, factory = split_target(str(spec.get("name", "")), "model.json")
    file = str(Path(module).expanduser().resolve()) if module.endswith(".py") else None
    return {"module": module, "factory": factory, "file": file, "sha256": None}


def _inspect(spec: dict[str, Any], run_dir: Path | None) -> tuple[str, Path, bytes, dict[str, Any], str | None]:
    """(where, the file that would be imported, its bytes, the record with that file and its actual hash, the hash
    recorded at fit); nothing runs."""
    import sysconfig

    code = code_record(spec)
    where = str(run_dir) if run_dir is not None else f"py:{code['module']}:{code['factory']}"
    module = code["module"]
    if not module.endswith(".py") and module.split(".")[0] in _NOT_FACTORIES:
        raise UntrustedCode(f"{where}: refused: the recorded factory {module}:{code['factory']} is part of Python's standard "
                            "library, not a model factory; this run folder was altered, fit it again")
    looked = _candidates(code, run_dir)
    path = next((p for p in looked if p.is_file()), None)
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    if path is not None and path.resolve().is_relative_to(stdlib):
        raise UntrustedCode(f"{where}: refused: the recorded factory file {path} is part of Python's standard library, "
                            "not a model factory; this run folder was altered, fit it again")
    if path is None:
        seen = ", ".join(str(p) for p in looked) or f"module {module} on the Python path"
        raise HeadstartError(f"{where}: the run's model is built by {code['factory']}() from {module}, which is not found "
                             f"(looked at {seen}); put it back where it was, or beside the run as at fit time")
    data = path.read_bytes()
    return where, path, data, {**code, "file": str(path), "sha256": sha256_of(data)}, code.get("sha256")


def _compared(actual: str, recorded: str | None) -> str:
    """How the file's hash compares with the one recorded at fit, for the messages."""
    if actual == recorded:
        return "as recorded at fit"
    return "no hash recorded at fit" if not recorded else f"NOT the {str(recorded)[:16]} recorded at fit"


def _untrusted(where: str, path: Path, actual: str, recorded: str | None) -> str:
    return (f"{where}: refused to import {path} (sha256 {actual[:16]}, {_compared(actual, recorded)}), the code that "
            "builds this run's model: a run folder's code runs only when you trust it; if you do, pass --trust-code "
            "(API: trust_code=True)")


def why_untrusted(spec: dict[str, Any], run_dir: Path | None) -> str:
    """The one line `admit` refuses with at trust level ``no``, or why the code is not there (a run can still
    predict through its ONNX export without it). A record that names the standard library is raised at once."""
    try:
        where, path, _, code, recorded = _inspect(spec, run_dir)
    except UntrustedCode:
        raise
    except HeadstartError as e:
        return str(e)
    return _untrusted(where, path, code["sha256"], recorded)


def admit(spec: dict[str, Any], run_dir: Path | None) -> tuple[Path, bytes, dict[str, Any]]:
    """Decide whether the factory ``spec`` records may be imported now; returns (file, its bytes, record).

    Nothing is executed here: the file is located and read, its hash compared, and the trust level in force
    (`headstart._trust`) applied. Every refusal is one line naming the file, its hash and the flag.
    """
    where, path, data, code, recorded = _inspect(spec, run_dir)
    actual = code["sha256"]
    level = current()
    if level == "no":
        raise UntrustedCode(_untrusted(where, path, actual, recorded))
    if actual != recorded and level != "any":
        why = "records no hash of it (fitted by an older headstart)" if not recorded else "was fitted with another version of it"
        raise UntrustedCode(f"{where}: refused to import {path} (sha256 {actual[:16]}, {_compared(actual, recorded)}): the run {why}; "
                            "--trust-code=any runs it anyway (API: trust_code='any'), or fit the run again")
    if (code["file"], actual) not in _RAN:
        from .._progress import info  # here: importing the registry loads no terminal library

        _RAN.add((code["file"], actual))
        info(f"{where}: running trusted code {path} (sha256 {actual[:16]}{'' if actual == recorded else ', unchecked'})")
    return path, data, code


def import_admitted(path: Path, data: bytes, code: dict[str, Any]) -> Any:
    """Import what `admit` accepted: a file from exactly the checked bytes, a module by name (its file must be
    the checked one)."""
    module = code["module"]
    if module.endswith(".py"):
        mod = _exec_source(data, path)
    else:
        mod = importlib.import_module(module)
        if Path(getattr(mod, "__file__", "") or "").resolve() != path.resolve():
            raise UntrustedCode(f"importing {module} loaded {mod.__file__}, not the checked {path}; "
                                "run from the folder the run was fitted in, or fit it again")
    return _factory_of(mod, module, code["factory"])


__all__ = ["admit", "code_record", "find_module_file", "import_admitted", "import_named", "sha256_of", "split_target",
           "why_untrusted"]
