"""Data files as users hold them: plain or compressed CSV, or Parquet; anything else is refused.

A pure module (the standard library, pandas and pyarrow; never Prefect or MLflow) used by the
sweep's loader (:func:`churnml.data.read_csv`) and by batch scoring (:mod:`churnml.scoring`),
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

    ``parquet_columns(file)``, ``iter_parquet(file, columns, batch_rows)``,
    ``read_parquet(file)``: Parquet by row batches, or whole (the Arrow buffers are released
    while the frame is built, so there is no second copy).

    ``max_data_bytes(value) -> int``: the limit from the ``SWEEPFLOW_MAX_DATA_BYTES`` setting's
    text (``"500000000"``, ``"512M"``, ``"2G"``; None or empty: :func:`default_max_data_bytes`).
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
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from churnml.schema import DataValidationError

#: Name of the setting that raises (or lowers) the data-size limit.
MAX_BYTES_SETTING = "SWEEPFLOW_MAX_DATA_BYTES"
#: A loaded frame takes several times the CSV's size in memory (pandas objects, parsing).
MEMORY_PER_DATA_BYTE = 8
#: Limit when the machine's memory cannot be read.
FALLBACK_MAX_DATA_BYTES = 1 << 30

EXPECTED = (
    "expected a CSV file (UTF-8, comma-separated; may be compressed as .gz, .bz2, .xz or a .zip "
    "holding one CSV) or a Parquet file"
)
COMPRESSED = ("gzip", "bz2", "xz", "zip")

_HEAD = 8192
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

# Magic bytes of files people give by mistake: (prefix, what it seems to be, what to do).
_OTHER_KINDS = (
    (b"%PDF", "a PDF document", "export the table as CSV"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image", "pass the data file, not a picture of it"),
    (b"\xff\xd8\xff", "a JPEG image", "pass the data file, not a picture of it"),
    (b"GIF87a", "a GIF image", "pass the data file, not a picture of it"),
    (b"GIF89a", "a GIF image", "pass the data file, not a picture of it"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office file (.xls/.doc)", "save it as CSV"),
    (b"\x93NUMPY", "a NumPy array file (.npy)", "save the table as CSV or Parquet"),
    (b"ARROW1", "an Arrow/Feather file", "save the table as Parquet or CSV"),
    (b"SQLite format 3\x00", "an SQLite database", "export the table as CSV"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file", "save the table as CSV or Parquet"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "use .zip, .gz, .bz2 or .xz"),
    (b"Rar!\x1a\x07", "a RAR archive", "use .zip, .gz, .bz2 or .xz"),
    (b"\x28\xb5\x2f\xfd", "Zstandard-compressed data", "use .gz, .bz2 or .xz"),
    (b"\x7fELF", "an executable program", "pass the data file"),
    (b"{\\rtf", "an RTF document", "export the table as CSV"),
    (b"\xff\xfe", "UTF-16 text", "re-save the file as UTF-8"),
    (b"\xfe\xff", "UTF-16 text", "re-save the file as UTF-8"),
)
_PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


@dataclass(frozen=True)
class DataFile:
    """A data file that passed the path checks, and what its content is.

    Attributes:
        path: The file.
        source: How messages name it (the path as given).
        kind: ``csv``, ``gzip``, ``bz2``, ``xz``, ``zip`` or ``parquet``.
        size: Bytes on disk.
        data_bytes: Size of the data once decompressed, when the file records it, else None.
        member: The CSV inside a zip archive.
        max_bytes: Limit on decompressed bytes while reading (None: no limit).
    """

    path: Path
    source: str
    kind: str
    size: int
    data_bytes: int | None = None
    member: str | None = None
    max_bytes: int | None = None


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
            head = handle.read(_HEAD)
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
        return DataFile(path, source, "parquet", size, data_bytes=_parquet_bytes(path, source))
    if head.startswith(b"\x1f\x8b"):
        return DataFile(path, source, "gzip", size, data_bytes=_gzip_bytes(path, size))
    if head.startswith(b"BZh"):
        return DataFile(path, source, "bz2", size)
    if head.startswith(b"\xfd7zXZ\x00"):
        return DataFile(path, source, "xz", size)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip(path, source, size)
    refuse_other(head, source)
    return DataFile(path, source, "csv", size)


def refuse_other(head: bytes, source: str, inside: str = "") -> None:
    """Raise if ``head`` (the first bytes of a file or of its decompressed data) is not text."""
    for magic, what, fix in _OTHER_KINDS:
        if head.startswith(magic):
            raise DataValidationError(f"{source}: looks like {what}{inside}; {fix}; {EXPECTED}")
    if head.startswith(_PICKLE_PROTOCOLS):
        refuse_pickle(source, inside)
    if head.startswith(b"PK\x03\x04"):
        raise DataValidationError(
            f"{source}: looks like a zip archive{inside}; pass the zip itself; {EXPECTED}"
        )
    if b"\x00" in head:
        raise DataValidationError(
            f"{source}: looks like binary data{inside}, not text (it has NUL bytes); {EXPECTED}"
        )


def refuse_pickle(source: str, inside: str = "") -> None:
    """Raise the one-line refusal of a pickle."""
    raise DataValidationError(
        f"{source}: looks like a Python pickle{inside}, which is never loaded (it can run code); "
        f"save the table as CSV or Parquet; {EXPECTED}"
    )


def _gzip_bytes(path: Path, size: int) -> int | None:
    """The uncompressed size from the gzip trailer (exact below 4 GiB for one member)."""
    if size < 18:
        return None
    with path.open("rb") as handle:
        handle.seek(-4, os.SEEK_END)
        recorded = int.from_bytes(handle.read(4), "little")
    return recorded if size < (1 << 32) else None


def _zip(path: Path, source: str, size: int) -> DataFile:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise DataValidationError(
            f"{source}: is a damaged zip archive ({error}); {EXPECTED}"
        ) from None
    names = [info.filename for info in infos]
    office = (
        ("xl/", "an Excel workbook (.xlsx)", "save the sheet as CSV (UTF-8)"),
        ("word/", "a Word document (.docx)", "export the table as CSV"),
        ("ppt/", "a PowerPoint file (.pptx)", "export the table as CSV"),
    )
    for prefix, what, fix in office:
        if any(name.startswith(prefix) for name in names):
            raise DataValidationError(f"{source}: looks like {what}; {fix}; {EXPECTED}")
    if "mimetype" in names and any(name == "content.xml" for name in names):
        raise DataValidationError(
            f"{source}: looks like an OpenDocument file (.ods/.odt); save the sheet as CSV; "
            f"{EXPECTED}"
        )
    files = [
        info
        for info in infos
        if not info.is_dir()
        and not info.filename.startswith("__MACOSX/")
        and not Path(info.filename).name.startswith(".")
    ]
    if len(files) != 1:
        shown = ", ".join(info.filename for info in files[:5]) or "no file"
        raise DataValidationError(
            f"{source}: is a zip archive holding {len(files)} files ({shown}); "
            f"put exactly one CSV in the zip"
        )
    (member,) = files
    if member.flag_bits & 0x1:
        raise DataValidationError(
            f"{source}: {member.filename} in the zip is password-protected; unzip it first"
        )
    return DataFile(path, source, "zip", size, data_bytes=member.file_size, member=member.filename)


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
                f"({' '.join(str(error).split()) or type(error).__name__}); "
                f"compress the file again"
            ) from None
        if self.count == 0 and self.file.kind != "csv":
            refuse_other(data[:_HEAD], self.file.source, inside=" inside the compressed file")
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


# --------------------------------------------------------------------------- Parquet


def _parquet_file(path: Path, source: str):  # type: ignore[no-untyped-def] - pyarrow type
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise DataValidationError(
            f"{source}: could not read as Parquet ({' '.join(str(error).split())[:200]}); "
            f"the file looks damaged; {EXPECTED}"
        ) from None


def _parquet_bytes(path: Path, source: str) -> int:
    metadata = _parquet_file(path, source).metadata
    return sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))


def parquet_columns(file: DataFile) -> list[str]:
    """The column names of a Parquet file."""
    return list(_parquet_file(file.path, file.source).schema_arrow.names)


def iter_parquet(
    file: DataFile, columns: list[str] | None, batch_rows: int
) -> Iterator[pd.DataFrame]:
    """A Parquet file's rows, ``batch_rows`` at a time, as frames (only ``columns``)."""
    parquet = _parquet_file(file.path, file.source)
    try:
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            yield batch.to_pandas()
    except DataValidationError:
        raise
    except Exception as error:  # a damaged row group
        raise DataValidationError(
            f"{file.source}: could not read as Parquet ({' '.join(str(error).split())[:200]}); "
            f"the file looks damaged"
        ) from None


def read_parquet(file: DataFile) -> pd.DataFrame:
    """A whole Parquet file as a frame; Arrow's buffers are freed as the frame is built."""
    parquet = _parquet_file(file.path, file.source)
    try:
        table = parquet.read()
        return table.to_pandas(self_destruct=True, split_blocks=True)
    except Exception as error:
        raise DataValidationError(
            f"{file.source}: could not read as Parquet ({' '.join(str(error).split())[:200]}); "
            f"the file looks damaged"
        ) from None
