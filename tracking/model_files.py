"""The one module that reads and writes model files: skops, with a trusted-types allowlist.

The allowlist lives here, in code, and is never read from the file being loaded. A file is
checked before anything in it is constructed: its size, its sha256 (when one was recorded) and
the types its schema names (``skops.io.get_untrusted_types`` reads only the schema). Pickle is
never used for files we hand out.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churnml.digests import file_sha256

if TYPE_CHECKING:
    import skops.io

#: Types our churn pipeline needs beyond skops' built-in safe set. Widening this list is a
#: security decision: add a type only after checking it cannot run code on load.
TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.feature_selection._univariate_selection.f_classif",
    "sklearn.tree._tree.Tree",
)

#: Refuse files larger than this unless the caller allows more (a forest can be large).
DEFAULT_MAX_BYTES = 2 * 1024**3


class ModelFileError(ValueError):
    """A model file was refused: missing, too large, tampered with, or holding untrusted types."""


def _skops() -> skops.io:
    # skops imports every scikit-learn estimator to list its safe types (0.7 s): loaded when a
    # file is first read or written, not by every module that imports this one.
    import skops.io

    return skops.io


#: Deflate's fastest level: a forest's file was written in half the time of level 6, and came
#: out ~25% larger (4.0 MiB against 3.3; 18 MiB uncompressed). It is written at the end of
#: every sweep, while the user waits.
COMPRESS_LEVEL = 1


def save_model_file(model: Any, path: str | Path) -> str:
    """Write ``model`` as a compressed skops file (atomically) and return its sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    _skops().dump(model, partial, compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL)
    os.replace(partial, path)
    return file_sha256(path)


def check_model_file(
    path: str | Path, *, expected_sha256: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> None:
    """Refuse a file before loading it; raises :class:`ModelFileError` saying why."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    size = path.stat().st_size
    if size > max_bytes:
        raise ModelFileError(f"{path}: {size} bytes is over the {max_bytes}-byte limit")
    if expected_sha256 is not None:
        actual = file_sha256(path)
        if actual != expected_sha256:
            raise ModelFileError(
                f"{path}: sha256 {actual} does not match the recorded {expected_sha256}; "
                "the file was changed or replaced"
            )
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a skops file (a pickle or other format); refused")
    try:
        untrusted = _skops().get_untrusted_types(file=path)
    except Exception as error:  # any parse failure means we cannot vouch for the file
        raise ModelFileError(f"{path}: unreadable skops schema ({error}); refused") from None
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise ModelFileError(
            f"{path}: holds types outside our allowlist: {', '.join(refused)}; refused"
        )


def load_model_file(
    path: str | Path, *, expected_sha256: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> Any:
    """Check, then load a skops model file trusting only :data:`TRUSTED_TYPES`."""
    check_model_file(path, expected_sha256=expected_sha256, max_bytes=max_bytes)
    try:
        return _skops().load(path, trusted=list(TRUSTED_TYPES))
    except Exception as error:
        raise ModelFileError(f"{path}: could not load ({error})") from None
