"""A local cache of the validated, split data, so a second sweep on the same data skips loading.

Reading, validating and splitting the 165k-row training file takes seconds, and the command line
and the flow each did it. The result depends only on the data's content and a few settings, so it
is kept under a key made of:

- the sha256 of the CSV's bytes (or, for the built-in data, the generator's rows and seed);
- the settings that change the split: target, sample_rows, test_size, seed and cv_folds (the
  last decides what validation accepts);
- the sha256 of the code that loads, validates and splits (:data:`_CODE_FILES`: ``schema.py``,
  the readers, ``data.py``, the generator, ``splits.py``, ``prepare.py``, ``model.py``) and the
  pandas and scikit-learn versions, so changed code never serves a stale split.

An entry is a folder ``<key>/`` holding ``train.feather``, ``test.feather`` (Arrow IPC, written and
read by pyarrow; no pickle) and ``meta.json`` with each file's sha256 and the frames' dtypes.
Entries are written to a temporary folder and renamed into place, so a reader never sees half an
entry; an entry that fails its checks (a truncated or edited file) is removed and counts as a
miss, and the caller reloads. Only data that passed validation is ever written.

In one process, a split that something still holds is handed out again instead of being read
from its entry (the command line's data check, then the flow's ``prepare-data``): the same
frames, so one copy in memory and one read.

A pure module: no Prefect, no MLflow. The caller says where the cache lives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

import pandas as pd
import sklearn

from churnml import prepare
from churnml.config import SweepConfig
from churnml.digests import file_sha256, frame_digest

#: Bump when the entry layout changes; old entries then simply miss.
CACHE_VERSION = 1
#: Entries kept; the least recently used beyond this are removed when a new one is written.
MAX_ENTRIES = 8
_FRAMES = ("train", "test")
_CODE_FILES = (
    "schema.py",
    "formats.py",
    "inputs.py",
    "parquet.py",
    "csv_checks.py",
    "reading.py",
    "data.py",
    "synthetic.py",
    "splits.py",
    "prepare.py",
    "model.py",
)


def cache_folder(mlruns: Path) -> Path:
    """Where the data cache lives inside the local store folder (``mlruns/cache/data``)."""
    return mlruns / "cache" / "data"


def cache_key(config: SweepConfig) -> str:
    """The key of the split that ``config`` asks for (64 hex characters).

    Args:
        config: the sweep's settings; ``config.data`` says where the rows come from.

    Returns:
        The sha256 hex digest of the data's identity, the split settings and the code version.

    Raises:
        OSError: the data file cannot be read (the normal loader then reports it properly).
    """
    data = config.data
    source: dict[str, Any]
    if data.path is None:
        source = {"generator": "generate_bank_churn", "rows": data.synthetic_rows}
        source["seed"] = data.synthetic_seed
    else:
        if not Path(data.path).is_file():  # a FIFO would block the hash; the loader explains
            raise FileNotFoundError(f"{data.path} is not a regular file")
        source = {"file_sha256": file_sha256(data.path)}
    identity = {
        "version": CACHE_VERSION,
        "source": source,
        "target": data.target,
        "sample_rows": data.sample_rows,
        "test_size": config.test_size,
        "seed": config.seed,
        "cv_folds": config.cv_folds,
        "code": _code_digest(),
        "pandas": pd.__version__,
        "sklearn": sklearn.__version__,
    }
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _code_digest() -> str:
    """sha256 of the modules whose code decides the cached frames."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _CODE_FILES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def load(key: str, folder: Path, config: SweepConfig) -> prepare.PreparedData | None:
    """The cached split under ``key``, or None on a miss (absent, stale or damaged entry).

    A damaged entry is removed, so the caller's reload writes a good one. The search-space and
    enough-rows checks of :func:`churnml.prepare.split` run again, since their settings are not
    in the key.

    Args:
        key: from :func:`cache_key`.
        folder: the cache folder.
        config: the sweep's settings (for the data's source and the search-space check).

    Raises:
        ConfigError: ``search_space.k_min``/``k_max`` exceed the data's encoded features.
        DataValidationError: The data is too small for ``min_class_rows``.
    """
    entry = folder / key
    if not (entry / "meta.json").is_file():
        return None
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        if meta["version"] != CACHE_VERSION or meta["key"] != key:
            raise ValueError("entry of another key or version")
        frames = {name: _read_frame(entry, name, meta) for name in _FRAMES}
    except Exception:  # any damage (bad JSON, truncated Arrow file, wrong dtypes) is a miss
        shutil.rmtree(entry, ignore_errors=True)
        return None
    os.utime(entry)  # most recently used: kept longest
    prepare.check_search_space(meta["encoded_features"], config)
    prepare.check_enough_rows(
        frames["train"][meta["target"]], frames["test"][meta["target"]], config
    )
    return prepare.PreparedData(
        train=frames["train"],
        test=frames["test"],
        target=meta["target"],
        encoded_features=list(meta["encoded_features"]),
        digest=meta["digest"],
        source=prepare.describe_source(config.data),
        path=str(Path(config.data.path).resolve()) if config.data.path else None,
        rows=int(meta["rows"]),
        churn_rate=float(meta["churn_rate"]),
        feature_columns=list(meta["feature_columns"]),
    )


def _read_frame(entry: Path, name: str, meta: dict[str, Any]) -> pd.DataFrame:
    """Read one frame, check its bytes against the recorded sha256, restore its dtypes."""
    path = entry / f"{name}.feather"
    if file_sha256(path) != meta["files"][name]["sha256"]:
        raise ValueError(f"{path} does not match its recorded sha256")
    _arrow()
    frame = pd.read_feather(path)
    _release_arrow_memory()  # the Arrow table it read, now converted to pandas
    dtypes: dict[str, str] = meta["files"][name]["dtypes"]
    if list(frame.columns) != list(dtypes):
        raise ValueError(f"{path} has other columns than recorded")
    for column, dtype in dtypes.items():
        # Arrow reads text columns back as pandas' string dtype; the loader makes them object.
        if str(frame[column].dtype) != dtype:
            frame[column] = frame[column].astype(dtype)
    return frame


def store(prepared: prepare.PreparedData, key: str, folder: Path) -> Path | None:
    """Write ``prepared`` under ``key``; returns the entry, or None when another writer won.

    Args:
        prepared: a split that passed validation.
        key: from :func:`cache_key`, computed before the data was read (so a file changed while
            it was read can never be stored under its new content's key).
        folder: the cache folder (created if missing).

    Raises:
        OSError: the cache folder cannot be written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    entry = folder / key
    if (entry / "meta.json").is_file():
        return None
    staging = folder / f".{key}.{uuid.uuid4().hex[:8]}.partial"
    staging.mkdir()
    try:
        files = {}
        for name in _FRAMES:
            frame: pd.DataFrame = getattr(prepared, name)
            path = staging / f"{name}.feather"
            _write_frame(frame, path)
            files[name] = {
                "sha256": file_sha256(path),
                "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
            }
        meta = {
            "version": CACHE_VERSION,
            "key": key,
            "created": time.time(),
            "files": files,
            "target": prepared.target,
            "encoded_features": prepared.encoded_features,
            "digest": prepared.digest,
            "rows": prepared.rows,
            "churn_rate": prepared.churn_rate,
            "feature_columns": prepared.feature_columns,
        }
        (staging / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        try:
            staging.rename(entry)
        except OSError:  # another sweep stored the same key first: theirs is as good
            return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _evict(folder, keep=entry)
    return entry


def _write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as Feather, without its index and without a pandas copy of it first
    (``reset_index`` would copy every column), then give back the Arrow copy's memory."""
    from pyarrow import feather

    table = _arrow().Table.from_pandas(frame, preserve_index=False)
    feather.write_feather(table, str(path))
    del table
    _release_arrow_memory()


def _arrow() -> Any:
    """pyarrow, its buffers taken from the C allocator that the frames use (once a process).

    Arrow's own allocator (mimalloc) kept 36 MiB of a 165k-row entry's buffers after they were
    freed, even when asked to give them back, and the sweep carried them to its end. From the
    C allocator, what Arrow frees the frames and the trials reuse.
    """
    import pyarrow as pa

    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())
    return pa


def _release_arrow_memory() -> None:
    """Give back what Arrow's allocator kept of freed buffers (it keeps them otherwise, and the
    process carries them for the whole sweep)."""
    import pyarrow as pa  # loaded already by the Feather read or write before this

    pa.default_memory_pool().release_unused()


def _evict(folder: Path, keep: Path) -> None:
    """Remove the least recently used entries beyond :data:`MAX_ENTRIES`."""
    entries = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[MAX_ENTRIES:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def prepare_data(
    config: SweepConfig, folder: Path, *, max_bytes: int | None = None
) -> tuple[prepare.PreparedData, bool]:
    """Load, validate and split the data, or take the split from the cache.

    Args:
        config: the sweep's settings.
        folder: the cache folder.
        max_bytes: largest data file accepted (see :func:`churnml.prepare.load_raw`).

    Returns:
        The prepared data, and True when it came from the cache.

    Raises:
        DataValidationError: the data is bad (never cached).
        ConfigError: the search space does not fit the data.
    """
    try:
        key: str | None = cache_key(config)
    except OSError:  # unreadable file: the loader below says what is wrong
        key = None
    if key is not None:
        alive = _in_memory(key, folder, config)
        if alive is not None:
            return alive, True
        cached = load(key, folder, config)
        if cached is not None:
            _remember(key, folder, cached)
            return cached, True
    clean = prepare.validate(prepare.load_raw(config.data, max_bytes=max_bytes), config)
    prepared = prepare.split(clean, config, digest=frame_digest(clean))
    del clean  # the split holds the rows now; the whole frame is not kept while it is stored
    if key is not None:
        # A read-only or full disk costs the next run a reload, nothing more.
        with contextlib.suppress(OSError):
            store(prepared, key, folder)
        _remember(key, folder, prepared)
    return prepared, False


#: Splits prepared in this process that something still holds, by entry. The command line
#: checks the data and keeps its split while the flow runs; the flow's own ``prepare-data`` then
#: takes the same frames instead of reading the entry again: one copy in memory, no second read.
#: Weak: an entry goes when its last holder lets go, so nothing is kept for the process's life.
_ALIVE: weakref.WeakValueDictionary[tuple[str, str], prepare.PreparedData] = (
    weakref.WeakValueDictionary()
)
#: The entry's files (name, size, mtime) when its split was remembered: a changed entry is
#: read (and checked) again, never answered from memory.
_SEEN: dict[tuple[str, str], tuple[tuple[str, int, int], ...]] = {}


def _entry_files(entry: Path) -> tuple[tuple[str, int, int], ...] | None:
    try:
        return tuple(
            (name, (entry / name).stat().st_size, (entry / name).stat().st_mtime_ns)
            for name in ("meta.json", *(f"{frame}.feather" for frame in _FRAMES))
        )
    except OSError:
        return None


def _remember(key: str, folder: Path, prepared: prepare.PreparedData) -> None:
    files = _entry_files(folder / key)
    if files is None:  # not stored (read-only disk): nothing on disk to stand for
        return
    _ALIVE[(str(folder), key)] = prepared
    _SEEN[(str(folder), key)] = files


def _in_memory(key: str, folder: Path, config: SweepConfig) -> prepare.PreparedData | None:
    """The split of the entry ``folder/key`` still held in this process, if the entry is
    unchanged since, checked against ``config`` as :func:`load` checks an entry. The frames are
    shared, never copied (nothing mutates them)."""
    slot = (str(folder), key)
    alive = _ALIVE.get(slot)
    if alive is None:
        _SEEN.pop(slot, None)
        return None
    if _entry_files(folder / key) != _SEEN.get(slot):
        return None
    prepare.check_search_space(alive.encoded_features, config)
    prepare.check_enough_rows(alive.y_train, alive.y_test, config)
    # The same bytes may sit under another path: the source named is this config's.
    return dataclasses.replace(
        alive,
        source=prepare.describe_source(config.data),
        path=str(Path(config.data.path).resolve()) if config.data.path else None,
    )
