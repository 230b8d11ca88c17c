"""A data file's rows: bytes -> checked UTF-8 lines -> records ({column: value} per row).

Files are read as bytes and decoded line by line, so an undecodable byte names its own line.
Row problems come out as `BadRow` (the caller raises or skips and counts them); file problems
raise `DataError` naming the file, the 1-based line and the reason. Standard library only.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import sys
from typing import Iterator

INT = re.compile(r"[+-]?\d+")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents in one cell are fine


class DataError(ValueError):
    """Bad input. str() names the file, the 1-based line (for a CSV record spanning several
    lines, the line where it starts) and the reason: "train.csv, line 17: empty text in column
    'text'"."""

    def __init__(self, reason: str, path=None, line: int | None = None, column=None):
        self.reason, self.path, self.line, self.column = reason, path, line, column
        where = ", ".join(p for p in (None if path is None else os.fspath(path),
                                      None if line is None else f"line {line}") if p)
        super().__init__(f"{where}: {reason}" if where else reason)


class BadRow(Exception):
    """A row-level problem: raised as DataError, or skipped and counted under `kind`."""

    def __init__(self, kind: str, reason: str, line: int, column=None):
        super().__init__(reason)
        self.kind, self.reason, self.line, self.column = kind, reason, line, column


# ---------------------------------------------------------------- reading bytes -> lines

def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_bytes(path) -> bytes:
    """The file's bytes, once they are known to be UTF-8 text with "\n" line ends (or none)."""
    name = os.fspath(path)
    if os.path.isdir(name):
        raise DataError("is a directory, not a data file", path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError("no such file", path) from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", path) from None
    _check_text_encoding(path, raw)
    return raw


_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
              (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))  # UTF-32 LE starts like UTF-16 LE


def _check_text_encoding(path, raw: bytes) -> None:
    """File-level errors, whatever --skip-bad-rows says: a UTF-16/32 file (Excel's "Unicode
    Text"), a NUL byte (UTF-16 without a byte order mark, or a binary file: every row would be
    garbage), and carriage-return-only line ends (classic Mac), which would read as one line."""
    for bom, encoding in _WIDE_BOMS:
        if raw.startswith(bom):
            raise DataError(f"the file is {encoding} (it starts with a {encoding} byte order mark); "
                            f"save it as UTF-8", path)
    body = raw.removeprefix(b"\xef\xbb\xbf")
    nul = body.find(b"\x00")
    if nul >= 0:
        line_start = body.rfind(b"\n", 0, nul) + 1
        raise DataError(f"NUL byte at column {nul - line_start + 1}: not UTF-8 text (UTF-16 without "
                        f"a byte order mark, or a binary file?); save it as UTF-8", path,
                        body.count(b"\n", 0, nul) + 1)
    if b"\r" in body and b"\n" not in body:
        raise DataError("lines end with a carriage return (\\r) only (old Mac line ends); save the "
                        "file with \\n or \\r\\n line ends", path)


def text_lines(path, raw: bytes, bad: list) -> Iterator[tuple[int, str]]:
    """(line number, decoded line with its newline) per physical line. Lines end at "\n" only
    (CRLF too), as editors and `wc -l` count them: a lone "\r" inside a field is not a line break.
    An undecodable line is appended to `bad` as a BadRow and not yielded."""
    lines = io.BytesIO(raw)             # shares raw's buffer; iterating splits at b"\n" alone
    if raw.startswith(b"\xef\xbb\xbf"):
        lines.seek(3)
    for number, chunk in enumerate(lines, start=1):     # one line at a time, not lists of them
        try:
            yield number, chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            bad.append(BadRow("invalid UTF-8",
                               f"invalid UTF-8 (byte 0x{chunk[e.start]:02x} at column {e.start + 1})",
                               number))


def check_not_empty(path, raw: bytes):
    if not raw.removeprefix(b"\xef\xbb\xbf").strip():
        raise DataError("file is empty (no rows)", path)


# ---------------------------------------------------------------- lines -> records

def records(path, raw: bytes, fmt: str, columns: tuple[str, ...], bad: list):
    """Yield (line, {column: value}) per data row, values as str (or JSON scalars for jsonl).
    Row problems are yielded as BadRow; file problems raise DataError."""
    if fmt == "jsonl":
        yield from _jsonl_records(path, raw, columns, bad)
    elif fmt == "txt":
        yield from _txt_records(path, raw, columns, bad)
    else:
        yield from _csv_records(path, raw, fmt, columns, bad)


def _drain(bad: list):
    while bad:
        yield bad.pop(0)


def _jsonl_records(path, raw, columns, bad):
    for number, line in text_lines(path, raw, bad):
        yield from _drain(bad)
        if not line.strip():
            continue
        try:
            obj = json.loads(line.rstrip("\r\n"))  # without the newline, so colno stays on this line
        except json.JSONDecodeError as e:
            yield BadRow("invalid JSON", f"invalid JSON: {e.msg} (column {e.colno})", number)
            continue
        if not isinstance(obj, dict):
            yield BadRow("not a JSON object", f"expected a JSON object, got {type(obj).__name__}",
                          number)
            continue
        missing = [c for c in columns if c not in obj]
        if missing:
            yield BadRow("missing column", f"no key {missing[0]!r} (keys: {', '.join(map(str, obj))})",
                          number)
            continue
        yield number, {c: obj[c] for c in columns}
    yield from _drain(bad)


def column_index(path, column: str, default: int) -> int:
    if column in ("text", "label"):
        return default
    try:
        index = int(column)
    except ValueError:
        raise DataError(f"a headerless .txt file names columns by index (0, 1, ...), "
                        f"not {column!r}", path) from None
    if index < 0:
        raise DataError(f"column index must be >= 0, got {index}", path)
    return index


COLUMN_OPTIONS = ("--text-column", "--label-column")     # what names columns[0] and columns[1]


def _txt_records(path, raw, columns, bad):
    defaults = {"text": 0, "label": 1}
    indices = [column_index(path, c, defaults.get(c, i)) for i, c in enumerate(columns)]
    _check_distinct_columns(path, columns, indices)
    width = None  # the first row's field count: every row must have as many
    for number, line in text_lines(path, raw, bad):
        yield from _drain(bad)
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) <= max(indices):
            need = max(indices) + 1
            option = COLUMN_OPTIONS[indices.index(max(indices))]
            yield BadRow("missing column", f"expected {need} tab-separated fields ({option} is column "
                                           f"{need - 1}), found {len(fields)}", number)
            continue
        if width is None:
            width = len(fields)
        elif len(fields) > width:
            yield BadRow("extra fields", f"{len(fields)} tab-separated fields where the first row has "
                                          f"{width} (a tab inside the text?)", number)
            continue
        yield number, {c: fields[i] for c, i in zip(columns, indices)}
    yield from _drain(bad)


def _check_distinct_columns(path, columns, indices) -> None:
    if len(columns) == 2 and indices[0] == indices[1]:
        raise DataError(f"the text and label columns ({columns[0]!r}, {columns[1]!r}) are the same "
                        f"column {indices[0]}: name them with --text-column and --label-column", path)


def _csv_records(path, raw, fmt, columns, bad):
    start = [0]  # physical line where the record being read began

    def stream():
        for number, line in text_lines(path, raw, bad):
            if start[0] == 0:
                start[0] = number
            yield line

    if fmt == "tsv":
        reader = csv.reader(stream(), delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
    else:  # strict: an unclosed or stray quote is an error, not the rest of the file in one cell
        reader = csv.reader(stream(), strict=True)
    try:
        header = None
        while header is None:
            row = next(reader, None)
            if bad:  # an undecodable header cannot be skipped: the columns are unknown
                raise DataError(bad[0].reason, path, bad[0].line)
            if row is None:
                raise DataError("file is empty (no header, no rows)", path)
            if any(cell.strip() for cell in row):
                header, header_line = [cell.strip() for cell in row], start[0]
            start[0] = 0
        repeated = sorted({c for c in header if c and header.count(c) > 1})
        if repeated:
            raise DataError(f"column name(s) {', '.join(map(repr, repeated))} appear more than once in "
                            f"the header", path, header_line)
        indices = []
        for c in columns:
            if c in header:
                indices.append(header.index(c))
            elif INT.fullmatch(c) and 0 <= int(c) < len(header):
                indices.append(int(c))
            else:
                raise DataError(f"no column {c!r} (columns: {', '.join(header)})", path, header_line,
                                column=c)
        _check_distinct_columns(path, columns, indices)
        separator = "tab-separated" if fmt == "tsv" else "comma-separated"
        for row in reader:
            yield from _drain(bad)
            number, start[0] = start[0], 0
            if not row:
                continue  # blank line
            short = [c for c, i in zip(columns, indices) if i >= len(row)]
            if short:
                yield BadRow("missing column", f"row has {len(row)} field(s), no value for column "
                                                f"{short[0]!r}", number)
                continue
            if any(cell.strip() for cell in row[len(header):]):  # trailing empty cells are harmless
                yield BadRow("extra fields", f"row has {len(row)} {separator} fields, the header "
                                              f"{len(header)} (an unquoted separator inside the text?)",
                              number)
                continue
            yield number, {c: row[i] for c, i in zip(columns, indices)}
        yield from _drain(bad)
    except csv.Error as e:
        reason = f"malformed {fmt.upper()}: {e}"
        if "unexpected end of data" in str(e):
            reason += " (a quoted field that starts on this line is never closed)"
        elif "expected after" in str(e):
            reason += " (a quote inside a quoted field must be doubled: \"\")"
        elif "new-line character seen in unquoted field" in str(e):  # a lone "\r" (Python's hint misleads)
            quote = " that is not quoted" if fmt == "csv" else ""
            reason = (f"malformed {fmt.upper()}: a carriage return (\\r) inside a field{quote} "
                      f"(mixed line ends? save the file with \\n or \\r\\n line ends)")
        raise DataError(reason, path, start[0] or None) from None


def unlabeled_txt_records(path, raw: bytes, column: str, bad: list):
    """Records of an unlabelled .txt file: a line without tabs is one text; a line with tabs
    gives its field `column` (an index). Problems are yielded as BadRow, as `records` does."""
    index = column_index(path, column, 0)
    for number, line in text_lines(path, raw, bad):
        yield from _drain(bad)
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if "\t" not in line:
            yield number, {column: line}
            continue
        fields = line.split("\t")
        if index >= len(fields):
            yield BadRow("missing column", f"expected {index + 1} tab-separated fields (--text-column is "
                                           f"column {index}), found {len(fields)}", number)
        else:
            yield number, {column: fields[index]}
    yield from _drain(bad)
