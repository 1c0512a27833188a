"""Data files as users hold them: plain or compressed CSV, or Parquet; anything else is refused.

A pure module (the standard library and pure churnml modules; never Prefect or MLflow) used by
the sweep's loader (:func:`churnml.reading.read_csv`) and by batch scoring (:mod:`churnml.scoring`),
so both accept the same files and refuse the same way.

API:
    ``inspect(path, *, max_bytes=None) -> DataFile``: check the path (missing, dangling symlink,
    symlink loop, directory, not a regular file, unreadable), sniff the content (magic bytes, not
    the name) and, with ``max_bytes``, refuse data larger than that up front. Raises
    :class:`~churnml.schema.DataValidationError` with one line saying what the file seems to be
    and what is expected.

    ``open_bytes(file) -> ContextManager[BinaryIO]``: the CSV bytes, decompressed on the fly
    (``.gz``, ``.bz2``, ``.xz``, a ``.zip`` holding one file), never held whole; past
    ``file.max_bytes`` decompressed bytes, or on damaged compressed data, it raises
    ``DataValidationError``.

    ``max_data_bytes(value) -> int``: the limit from the ``SWEEPFLOW_MAX_DATA_BYTES`` setting's
    text (``"500000000"``, ``"512M"``, ``"2G"``; None or empty: :func:`default_max_data_bytes`).

The formats and their refusals are in :mod:`churnml.formats`; Parquet is read by
:mod:`churnml.parquet`.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import io
import lzma
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from churnml.formats import EXPECTED, HEAD, DataFile, gzip_bytes, refuse_other, zip_file
from churnml.parquet import parquet_bytes
from churnml.schema import DataValidationError, one_line

#: Name of the setting that raises (or lowers) the data-size limit.
MAX_BYTES_SETTING = "SWEEPFLOW_MAX_DATA_BYTES"
#: A loaded frame takes several times the CSV's size in memory (pandas objects, parsing).
MEMORY_PER_DATA_BYTE = 8
#: Limit when the machine's memory cannot be read.
FALLBACK_MAX_DATA_BYTES = 1 << 30

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def default_max_data_bytes() -> int:
    """The default data-size limit: the machine's memory / :data:`MEMORY_PER_DATA_BYTE`."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not Linux/macOS
        return FALLBACK_MAX_DATA_BYTES
    return max(memory // MEMORY_PER_DATA_BYTE, 1 << 20)


def max_data_bytes(value: str | int | None = None) -> int:
    """Parse the ``SWEEPFLOW_MAX_DATA_BYTES`` setting's value into a byte count.

    Args:
        value: Bytes as an int or text, with an optional K/M/G/T suffix (powers of 1024);
            None or empty text gives :func:`default_max_data_bytes`.

    Raises:
        ValueError: The text is not a positive size (one line naming the setting and value).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return default_max_data_bytes()
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1:] if text[-1:] in _UNITS and not text[-1:].isdigit() else ""
    number = text[: len(text) - len(unit)].strip()
    try:
        result = int(float(number) * _UNITS[unit])
    except ValueError:
        result = 0
    if result <= 0:
        raise ValueError(
            f"{MAX_BYTES_SETTING}={value!r} is not a size; give bytes such as 2000000000 or 2G"
        )
    return result


def human(size: int) -> str:
    """A byte count for messages: ``12.3 MiB (12,350,130 bytes)``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit} ({size:,} bytes)"
    return f"{size:,} bytes"


def inspect(path: str | Path, *, max_bytes: int | None = None) -> DataFile:
    """Check a data file's path and content type, and its size against ``max_bytes``.

    Raises:
        DataValidationError: One line: missing, dangling symlink, symlink loop, a directory,
            not a regular file, unreadable, another kind of file (named), a zip without exactly
            one data file, or (with ``max_bytes``) data larger than the limit.
    """
    source = str(path)
    path = Path(path)
    info = _stat(path, source)
    if stat.S_ISDIR(info.st_mode):
        raise DataValidationError(
            f"{source}: is a directory; pass the path of a CSV file (or .csv.gz, .zip, .bz2, "
            f".xz, Parquet) inside it"
        )
    if not stat.S_ISREG(info.st_mode):
        raise DataValidationError(
            f"{source}: is not a regular file (a pipe, socket or device); {EXPECTED}"
        )
    try:
        with path.open("rb") as handle:
            head = handle.read(HEAD)
    except PermissionError:
        raise DataValidationError(
            f"{source}: cannot be read (permission denied); make the file readable "
            f"(e.g. chmod a+r) or copy it somewhere readable"
        ) from None
    except OSError as error:
        raise DataValidationError(
            f"{source}: cannot be read ({error.strerror or error}); check the file"
        ) from None
    file = _sniff(path, source, head, info.st_size)
    if max_bytes is None:
        return file
    file = DataFile(**{**file.__dict__, "max_bytes": max_bytes})
    known = file.data_bytes if file.data_bytes is not None else file.size
    if known > max_bytes:
        raise too_large(file, known, measured="recorded in the file" if file.data_bytes else "")
    return file


def too_large(file: DataFile, size: int, *, measured: str = "") -> DataValidationError:
    """The one-line refusal of data over ``file.max_bytes``."""
    what = "data" if file.kind == "csv" else f"data once decompressed ({measured or 'read so far'})"
    if file.kind == "parquet":
        what = "data uncompressed (from the Parquet metadata)"
    return DataValidationError(
        f"{file.source}: {human(size)} of {what} is more than the limit of "
        f"{human(file.max_bytes or 0)} (about 1/{MEMORY_PER_DATA_BYTE} of this machine's memory "
        f"by default); use a sample of the rows, or raise {MAX_BYTES_SETTING} if the machine has "
        f"the memory"
    )


def _stat(path: Path, source: str) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise DataValidationError(
                f"{source}: is a symbolic link to {os.readlink(path)}, which does not exist; "
                f"fix the link or pass the data file itself"
            ) from None
        raise DataValidationError(
            f"{source}: file not found (working directory {Path.cwd()}); check the path"
        ) from None
    except PermissionError:
        raise DataValidationError(
            f"{source}: cannot be read (permission denied on a folder of its path); "
            f"make the folder searchable or copy the file somewhere readable"
        ) from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DataValidationError(
                f"{source}: is a symbolic link loop (the link points back to itself); "
                f"pass the data file itself"
            ) from None
        if error.errno == errno.ENOTDIR:
            raise DataValidationError(
                f"{source}: file not found (a part of the path is a file, not a folder); "
                f"check the path"
            ) from None
        raise DataValidationError(
            f"{source}: cannot be read ({error.strerror or error}); check the path"
        ) from None


def _sniff(path: Path, source: str, head: bytes, size: int) -> DataFile:
    """What the file is, from its first bytes."""
    if head.startswith(b"PAR1"):
        return DataFile(path, source, "parquet", size, data_bytes=parquet_bytes(path, source))
    if head.startswith(b"\x1f\x8b"):
        return DataFile(path, source, "gzip", size, data_bytes=gzip_bytes(path, size))
    if head.startswith(b"BZh"):
        return DataFile(path, source, "bz2", size)
    if head.startswith(b"\xfd7zXZ\x00"):
        return DataFile(path, source, "xz", size)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return zip_file(path, source, size)
    refuse_other(head, source)
    return DataFile(path, source, "csv", size)


# --------------------------------------------------------------------------- CSV streams


class _Stream(io.RawIOBase):
    """Reads the decompressed bytes, counting them against a limit; errors become one line."""

    def __init__(self, inner: BinaryIO, file: DataFile) -> None:
        self.inner, self.file, self.count = inner, file, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def] - memoryview protocol
        try:
            data = self.inner.read(len(buffer))
        except (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile) as error:
            what = {"gzip": ".gz", "bz2": ".bz2", "xz": ".xz", "zip": "zip"}[self.file.kind]
            raise DataValidationError(
                f"{self.file.source}: damaged {what} data after {self.count:,} bytes "
                f"({one_line(error) or type(error).__name__}); "
                f"compress the file again"
            ) from None
        if self.count == 0 and self.file.kind != "csv":
            refuse_other(data[:HEAD], self.file.source, inside=" inside the compressed file")
        self.count += len(data)
        if self.file.max_bytes is not None and self.count > self.file.max_bytes:
            raise too_large(self.file, self.count)
        buffer[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def open_bytes(file: DataFile, *, buffer_size: int = 1 << 20) -> Iterator[BinaryIO]:
    """The file's CSV bytes, decompressed on the fly, as a buffered binary stream.

    Raises:
        DataValidationError: (while reading) damaged compressed data, data inside that is not
            text, or more than ``file.max_bytes`` bytes.
    """
    if file.kind == "parquet":
        raise ValueError("Parquet is read with iter_parquet/read_parquet, not as bytes")
    with contextlib.ExitStack() as stack:
        raw: BinaryIO = stack.enter_context(file.path.open("rb"))
        if file.kind == "gzip":
            raw = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        elif file.kind == "bz2":
            raw = stack.enter_context(bz2.BZ2File(raw))
        elif file.kind == "xz":
            raw = stack.enter_context(lzma.LZMAFile(raw))
        elif file.kind == "zip":
            archive = stack.enter_context(zipfile.ZipFile(raw))
            raw = stack.enter_context(archive.open(file.member or ""))
        yield io.BufferedReader(_Stream(raw, file), buffer_size=buffer_size)
