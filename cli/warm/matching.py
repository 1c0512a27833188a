"""What a command must share with the warm process to run in it: the environment read at
import time, the Prefect settings files of its folder, the Python and the checkout, and the code
on disk as it was when the warm process imported it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Environment variables read when the runner imports its modules; the command's must match.
IMPORT_TIME_PREFIXES = (
    "PREFECT_",
    "MLFLOW_",
    "PYTHON",
    "MALLOC_",
    "GLIBC_",
    "OMP_",
    "OPENBLAS_",
    "MKL_",
    "NUMEXPR_",
    "SKLEARN_",
    "JOBLIB_",
    "LC_",
)
IMPORT_TIME_NAMES = ("HOME", "LANG", "TZ")
#: Files in the working folder that Prefect reads its settings from.
PREFECT_SETTINGS_FILES = (".env", "prefect.toml", "pyproject.toml")


def identity(environ: Mapping[str, str], folder: Path) -> dict[str, Any]:
    """What a warm process must share with a command to run it: the environment read at import
    time and the Prefect settings files in the working folder (their sha256)."""
    variables = {
        name: value
        for name, value in environ.items()
        if name.startswith(IMPORT_TIME_PREFIXES) or name in IMPORT_TIME_NAMES
    }
    files = {}
    for name in PREFECT_SETTINGS_FILES:
        with contextlib.suppress(OSError):
            files[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    return {"environment": variables, "files": files}


def differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """What differs between two identities, by name (never the values: they may be secrets)."""
    found = []
    for part in ("environment", "files"):
        a, b = ours.get(part, {}), theirs.get(part, {})
        found += sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))
    return found


#: The folder sweepflow's packages are in.
CODE_ROOT = Path(__file__).resolve().parents[2]


def interpreter() -> list[str]:
    """The Python and the checkout a process runs: a command and its warm process share both
    (another virtual environment or checkout with the same Prefect home does not)."""
    return [sys.executable, str(CODE_ROOT)]


def code_fingerprint(root: Path = CODE_ROOT) -> dict[str, list[int]]:
    """The size and modification time of every module this process imported from the packages
    in ``root`` (sweepflow's code), and of the folders packages are installed in (an install
    or removal changes them). ~2 ms: modules are told apart by their package's name, not by
    resolving thousands of paths."""
    import site

    ours = {entry.name for entry in root.iterdir() if (entry / "__init__.py").is_file()}
    files: set[str] = set()
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and name.partition(".")[0] in ours:
            files.add(path)
    files.update(p for p in (*site.getsitepackages(), site.getusersitepackages()) if p)
    stamps = {}
    for path in sorted(files):
        try:
            stat = os.stat(path)
            stamps[path] = [stat.st_mtime_ns, stat.st_size]
        except OSError:
            stamps[path] = [0, -1]
    return stamps
