"""File-level checks of a CSV stream: UTF-8, the separator, the header, field counts and lengths.

A pure module (the standard library and numpy). The stream is checked in bounded chunks cut at a
line break outside double quotes, with vectorised byte counts; when a quote makes the fast scan
unsure, the csv module reads the file again and has the last word. Every problem raises
:class:`~churnml.schema.DataValidationError` with one line naming the file, the line and/or the
column, and saying what to fix.
"""

from __future__ import annotations

import csv
import io
from typing import BinaryIO

import numpy as np

from churnml import inputs
from churnml.formats import DataFile
from churnml.schema import DataValidationError, short

_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_SEPARATORS = {
    ";": "looks ;-separated",
    "\t": "looks tab-separated",
    "|": "looks |-separated",
}
_UNCLOSED_QUOTE = "that is never closed"
_CHUNK = 4 << 20  # bytes checked at a time


def check_csv_stream(stream: BinaryIO, file: DataFile, max_field_bytes: int) -> list[str]:
    """File-level checks of a CSV stream, in bounded chunks that end at a line break.

    A chunk is cut after its last line break outside double quotes, so every chunk starts
    outside a quoted field and no UTF-8 sequence spans two chunks.

    Returns:
        The header's column names.
    """
    source = file.source
    offset = 0  # file bytes before ``carry``
    lines = 0  # line breaks before ``carry``
    carry = b""
    columns: list[str] | None = None
    has_rows = False
    quoted = False
    guard = 4 * _CHUNK
    while True:
        chunk = stream.read(_CHUNK)
        if offset == 0 and not carry and chunk.startswith(_UTF8_BOM):
            chunk = chunk[len(_UTF8_BOM) :]
            offset = len(_UTF8_BOM)
        buffer = carry + chunk
        if chunk:
            cut = _last_break(buffer)
            if cut == 0 and len(buffer) <= guard:
                carry = buffer
                continue
            segment, carry = (buffer, b"") if cut == 0 else (buffer[:cut], buffer[cut:])
        else:
            segment, carry = buffer, b""
        _check_utf8(segment, source, offset, lines)
        quoted = quoted or b'"' in segment
        body, body_lines = segment, lines
        if columns is None:
            found = _header_line(segment)
            if found is not None:
                index, end, text = found
                columns = _parse_header(text, source, lines + index + 1)
                guard = max(guard, 2 * (len(columns) + 1) * (max_field_bytes + 3))
                body, body_lines = segment[end:], lines + index + 1
        if columns is not None and body and not body.isspace():
            has_rows = True
            problem = _scan_fields(body, columns, max_field_bytes, body_lines)
            if problem is not None:
                if quoted:
                    # A quote is only special at the start of a field; the csv module has the
                    # last word (and if it finds nothing wrong, pandas parses the file the same
                    # way): it reads the whole file again, streaming.
                    try:
                        with inputs.open_bytes(file) as again:
                            _check_fields_quoted(again, source, columns, max_field_bytes)
                    except DataValidationError:
                        if _UNCLOSED_QUOTE in problem:  # say where the runaway field starts
                            raise DataValidationError(f"{source}: {problem}") from None
                        raise
                    return columns
                raise DataValidationError(f"{source}: {problem}")
        offset += len(segment)
        lines += segment.count(b"\n")
        if not chunk:
            break
    if columns is None:
        raise DataValidationError(
            f"{source}: file is empty; expected a comma-separated header row and data rows"
        )
    if not has_rows:
        raise DataValidationError(
            f"{source}: file has a header but no data rows; add at least one row under the header"
        )
    return columns


def _last_break(data: bytes) -> int:
    """The offset just past the last line break outside double quotes (0 if none)."""
    end = data.rfind(b"\n")
    if end < 0:
        return 0
    if b'"' not in data:
        return end + 1
    arr = np.frombuffer(data, dtype=np.uint8)
    inside = np.bitwise_xor.accumulate((arr == ord('"')).view(np.uint8)).view(np.bool_)
    breaks = np.flatnonzero((arr == ord("\n")) & ~inside)
    return int(breaks[-1]) + 1 if len(breaks) else 0


def _check_utf8(data: bytes, source: str, offset: int, lines: int = 0) -> None:
    """Raise unless ``data`` is UTF-8, naming the offset and line of the first bad byte.

    Args:
        data: A chunk of the file.
        source: Named in the error.
        offset: File offset of the chunk's first byte.
        lines: Line breaks in the file before the chunk.
    """
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = lines + data.count(b"\n", 0, error.start) + 1
        bad = data[error.start : error.start + 1]
        raise DataValidationError(
            f"{source}: not UTF-8 text: byte 0x{bad.hex()} at byte offset {error.start + offset} "
            f"(line {line}); re-save the file as UTF-8"
        ) from None


def _header_line(data: bytes) -> tuple[int, int, str] | None:
    """Find the header: the first non-blank line (pandas skips leading blank lines).

    Returns:
        The 0-based line index of the header in ``data``, the byte offset just past its line
        break, and its text without the line break; None if ``data`` has only blank lines.
    """
    start = 0
    index = 0
    while start < len(data):
        end = data.find(b"\n", start)
        stop = len(data) if end < 0 else end
        line = data[start:stop]
        if line.strip():
            return index, stop + 1, line.rstrip(b"\r").decode("utf-8")
        start = stop + 1
        index += 1
    return None


def _parse_header(header: str, source: str, line: int) -> list[str]:
    """Split the header line, rejecting other separators and duplicate column names."""
    names = next(csv.reader([header]))
    if len(names) == 1:
        for separator, looks in _OTHER_SEPARATORS.items():
            if separator in header:
                raise DataValidationError(
                    f"{source}: header {short(header)} {looks}, expected commas; "
                    f"re-save the file with ',' as the separator"
                )
    positions: dict[str, list[int]] = {}
    for number, name in enumerate(names, start=1):
        positions.setdefault(name, []).append(number)
    repeated = {name: where for name, where in positions.items() if len(where) > 1}
    if repeated:
        shown = "; ".join(
            f"{name!r} (columns {', '.join(map(str, where))})" for name, where in repeated.items()
        )
        raise DataValidationError(
            f"{source}: duplicate column name(s) in the header on line {line}: {shown}; "
            f"give every column a unique name"
        )
    return names


def _scan_fields(
    data: bytes, columns: list[str], max_field_bytes: int, lines: int = 0
) -> str | None:
    """Find the first row with the wrong number of fields, or a huge field, with numpy.

    Commas and line breaks between an opening and a closing double quote (odd quote parity)
    belong to a quoted field. Runs in tens of milliseconds on the 12 MB training file.

    Args:
        data: Whole rows of the file, starting outside a quoted field.
        columns: The header's names.
        max_field_bytes: Longest field accepted.
        lines: Line breaks in the file before ``data`` (for the line numbers in messages).

    Returns:
        A description of the first problem (without the source), or None.
    """
    if not data or data.isspace():
        return None
    arr = np.frombuffer(data, dtype=np.uint8)
    is_comma = arr == ord(",")
    is_break = arr == ord("\n")
    if b'"' in data:
        inside = np.bitwise_xor.accumulate((arr == ord('"')).view(np.uint8)).view(np.bool_)
        if inside[-1]:
            line = lines + data.count(b"\n", 0, data.rindex(b'"')) + 1
            return f'line {line} opens a quote (") {_UNCLOSED_QUOTE}; close or remove it'
        is_comma &= ~inside
        is_break &= ~inside
    breaks = np.flatnonzero(is_break)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(data)]))
    if starts[-1] == len(data):  # the data ends with a line break: no last row
        starts, ends = starts[:-1], ends[:-1]

    # No field is longer than its row, so only rows longer than the limit need a closer look.
    for index in np.flatnonzero(ends - starts > max_field_bytes):
        start, end = int(starts[index]), int(ends[index])
        separators = np.concatenate(([-1], np.flatnonzero(is_comma[start:end]), [end - start]))
        lengths = np.diff(separators) - 1
        number = int(np.argmax(lengths)) + 1
        if lengths[number - 1] > max_field_bytes:
            name = columns[number - 1] if number <= len(columns) else f"field {number}"
            line = lines + data.count(b"\n", 0, start) + 1
            return (
                f"line {line}, column {name!r} has a "
                f"{int(lengths[number - 1]):,}-byte field (limit {max_field_bytes:,} bytes); "
                f"the file looks corrupt or is not a bank-churn CSV"
            )

    fields = np.add.reduceat(is_comma.view(np.uint8), starts, dtype=np.int64) + 1
    for index in np.flatnonzero(fields != len(columns)):
        start, end = int(starts[index]), int(ends[index])
        if data[start:end].strip():
            line = lines + data.count(b"\n", 0, start) + 1
            return _ragged(line, int(fields[index]), len(columns))
    return None


def _check_fields_quoted(
    stream: BinaryIO, source: str, columns: list[str], max_field_bytes: int
) -> None:
    """Field checks with the csv module over a fresh stream: slower, but exact with quotes."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    expected = len(columns)
    limit = max_field_bytes
    try:
        for row in reader:
            if len(row) != expected and not (len(row) <= 1 and not "".join(row).strip()):
                raise DataValidationError(
                    f"{source}: {_ragged(reader.line_num, len(row), expected)}"
                )
            if max(map(len, row), default=0) <= limit:
                continue
            for number, field in enumerate(row, start=1):
                if len(field) > limit:
                    name = columns[number - 1] if number <= len(columns) else f"field {number}"
                    raise DataValidationError(
                        f"{source}: line {reader.line_num}, column {name!r} has a "
                        f"{len(field):,}-character field (limit {max_field_bytes:,} bytes); "
                        f"the file looks corrupt (an unclosed quote?)"
                    )
    except csv.Error as error:
        raise DataValidationError(
            f"{source}: line {reader.line_num}: {error}; the file looks corrupt "
            f"(an unclosed quote?)"
        ) from None
    finally:
        text.detach()


def _ragged(line: int, found: int, expected: int) -> str:
    return (
        f"line {line} has {found} fields but the header has {expected}; "
        f"fix that row (a missing or extra comma?)"
    )
