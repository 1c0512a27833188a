"""What a data file is: the accepted formats, the record of a checked file, and refusals.

A pure module (the standard library only). :func:`churnml.inputs.inspect` sniffs a file's first
bytes and builds a :class:`DataFile`; the helpers here name what any other kind of file seems to
be (a PDF, a workbook, a pickle, ...), read a gzip's recorded size and check a zip archive, each
raising :class:`~churnml.schema.DataValidationError` with one line saying what is expected.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from churnml.schema import DataValidationError

EXPECTED = (
    "expected a CSV file (UTF-8, comma-separated; may be compressed as .gz, .bz2, .xz or a .zip "
    "holding one CSV) or a Parquet file"
)
COMPRESSED = ("gzip", "bz2", "xz", "zip")

#: Bytes read from the start of a file (or of its decompressed data) to tell what it is.
HEAD = 8192

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


def gzip_bytes(path: Path, size: int) -> int | None:
    """The uncompressed size from the gzip trailer (exact below 4 GiB for one member)."""
    if size < 18:
        return None
    with path.open("rb") as handle:
        handle.seek(-4, os.SEEK_END)
        recorded = int.from_bytes(handle.read(4), "little")
    return recorded if size < (1 << 32) else None


def zip_file(path: Path, source: str, size: int) -> DataFile:
    """A zip archive holding exactly one data file (not an Office document, not encrypted)."""
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
