"""Fingerprints: a frame's contents, and a file's sha256.

A pure module (the standard library and pandas).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd


def frame_digest(frame: pd.DataFrame) -> str:
    """Return a stable fingerprint of a frame's contents, column names and dtypes.

    The index is ignored, so a frame and its ``reset_index(drop=True)`` copy match.

    Args:
        frame: Any frame.

    Returns:
        The first 16 hex characters of a sha256 digest.
    """
    digest = hashlib.sha256()
    schema = [[str(name), str(dtype)] for name, dtype in frame.dtypes.items()]
    digest.update(json.dumps(schema).encode("utf-8"))
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    """Return the sha256 hex digest of a file, read in chunks (never whole).

    Args:
        path: The file.

    Returns:
        The 64-character hex digest.

    Raises:
        OSError: The file cannot be opened or read (e.g. ``FileNotFoundError``).
    """
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
