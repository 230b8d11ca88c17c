"""Labelled text files -> rows and label ids (CSV, TSV, JSONL, headerless text<TAB>label .txt).

Every bad input raises `DataError` naming the file, the 1-based line and the reason. Files are
read as bytes and decoded line by line, so an undecodable byte names its own line. With
`skip_bad_rows`, bad rows are dropped and counted by reason; file-level problems still raise.
numpy and the standard library only.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field, replace
from typing import Iterator, Sequence

import numpy as np

FORMATS = ("csv", "tsv", "jsonl", "txt")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".txt": "txt"}
_INT = re.compile(r"[+-]?\d+")

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


class _BadRow(Exception):
    """A row-level problem: raised as DataError, or skipped and counted under `kind`."""

    def __init__(self, kind: str, reason: str, line: int, column=None):
        super().__init__(reason)
        self.kind, self.reason, self.line, self.column = kind, reason, line, column


@dataclass(frozen=True)
class DataOptions:
    format: str | None = None       # 'csv' | 'tsv' | 'jsonl' | 'txt'; None = from the extension
    text_column: str = "text"       # header name, JSON key, or column index for headerless .txt
    label_column: str = "label"     # for headerless .txt the defaults mean index 0 and 1
    label_names: str | None = None  # file with one label name per line, naming ids 0..k-1
    skip_bad_rows: bool = False


@dataclass
class LabelledData:
    path: str
    sha256: str
    texts: list[str]
    labels: list[int]               # ids into label_names
    label_names: list[str]
    lines: list[int]                # source line of each row (1-based)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    file_rows: int | None = None    # rows read from the file, before any subsample (None: len)

    def __len__(self) -> int:
        return len(self.texts)

    def summary(self) -> dict:
        """What training.json records about the file: path, sha256, rows used (a subsample's
        size), rows in the file, skipped rows."""
        return {"path": str(self.path), "sha256": self.sha256, "rows": len(self),
                "file_rows": self.file_rows if self.file_rows is not None else len(self),
                "skipped": self.skipped}

    def counts(self) -> list[int]:
        """Rows per class, in label_names order."""
        return np.bincount(np.asarray(self.labels, dtype=np.int64),
                           minlength=len(self.label_names)).tolist()


# ---------------------------------------------------------------- reading bytes -> lines

def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_bytes(path) -> bytes:
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


def _lines(path, raw: bytes, bad: list) -> Iterator[tuple[int, str]]:
    """(line number, decoded line with its newline) per physical line. Lines end at "\n" only
    (CRLF too), as editors and `wc -l` count them: a lone "\r" inside a field is not a line break.
    An undecodable line is appended to `bad` as a _BadRow and not yielded."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    chunks = raw.split(b"\n")
    chunks = [c + b"\n" for c in chunks[:-1]] + ([chunks[-1]] if chunks[-1] else [])
    for number, chunk in enumerate(chunks, start=1):
        try:
            yield number, chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            bad.append(_BadRow("invalid UTF-8",
                               f"invalid UTF-8 (byte 0x{chunk[e.start]:02x} at column {e.start + 1})",
                               number))


def _check_not_empty(path, raw: bytes):
    if not raw.removeprefix(b"\xef\xbb\xbf").strip():
        raise DataError("file is empty (no rows)", path)


def resolve_format(path, options: DataOptions) -> str:
    if options.format is not None:
        if options.format not in FORMATS:
            raise DataError(f"unknown format {options.format!r} (one of {', '.join(FORMATS)})", path)
        return options.format
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in EXTENSIONS:
        raise DataError(f"unknown file extension {ext or '(none)'!r}; name the format with "
                        f"--format {'|'.join(FORMATS)}", path)
    return EXTENSIONS[ext]


# ---------------------------------------------------------------- lines -> records

def _records(path, raw: bytes, fmt: str, columns: tuple[str, ...], bad: list):
    """Yield (line, {column: value}) per data row, values as str (or JSON scalars for jsonl).
    Row problems are yielded as _BadRow; file problems raise DataError."""
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
    for number, line in _lines(path, raw, bad):
        yield from _drain(bad)
        if not line.strip():
            continue
        try:
            obj = json.loads(line.rstrip("\r\n"))  # without the newline, so colno stays on this line
        except json.JSONDecodeError as e:
            yield _BadRow("invalid JSON", f"invalid JSON: {e.msg} (column {e.colno})", number)
            continue
        if not isinstance(obj, dict):
            yield _BadRow("not a JSON object", f"expected a JSON object, got {type(obj).__name__}",
                          number)
            continue
        missing = [c for c in columns if c not in obj]
        if missing:
            yield _BadRow("missing column", f"no key {missing[0]!r} (keys: {', '.join(map(str, obj))})",
                          number)
            continue
        yield number, {c: obj[c] for c in columns}
    yield from _drain(bad)


def _column_index(path, column: str, default: int) -> int:
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


def _txt_records(path, raw, columns, bad):
    defaults = {"text": 0, "label": 1}
    indices = [_column_index(path, c, defaults.get(c, i)) for i, c in enumerate(columns)]
    _check_distinct_columns(path, columns, indices)
    width = None  # the first row's field count: every row must have as many
    for number, line in _lines(path, raw, bad):
        yield from _drain(bad)
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) <= max(indices):
            need = max(indices) + 1
            yield _BadRow("missing column", f"expected {need} tab-separated fields, found {len(fields)}",
                          number)
            continue
        if width is None:
            width = len(fields)
        elif len(fields) > width:
            yield _BadRow("extra fields", f"{len(fields)} tab-separated fields where the first row has "
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
        for number, line in _lines(path, raw, bad):
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
            elif _INT.fullmatch(c) and 0 <= int(c) < len(header):
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
                yield _BadRow("missing column", f"row has {len(row)} field(s), no value for column "
                                                f"{short[0]!r}", number)
                continue
            if any(cell.strip() for cell in row[len(header):]):  # trailing empty cells are harmless
                yield _BadRow("extra fields", f"row has {len(row)} {separator} fields, the header "
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


# ---------------------------------------------------------------- labels

def _label_key(value, line: int) -> str:
    """A raw label as a string, as written (stripped); a JSON integer (or integral float) as
    str(int). Integer strings are compared as numbers later, by `_file_labels`."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _BadRow("bad label", f"label must be a string or an integer, got {json.dumps(value)}",
                      line)
    if isinstance(value, float):
        if not value.is_integer():
            raise _BadRow("bad label", f"label must be a string or an integer, got {value}", line)
        value = int(value)
    text = str(value).strip()
    if not text:
        raise _BadRow("empty label", "empty label", line)
    return text


def format_labels(labels: Sequence[str]) -> str:
    """Labels for a message: plain, or each quoted when one holds a comma (`a, b` is one label)."""
    return ", ".join(map(repr, labels) if any("," in name for name in labels) else labels)


def read_label_names(path) -> list[str]:
    """One label name per line; trailing blank lines ignored."""
    raw = _read_bytes(path)
    bad: list = []
    names = [line.strip() for _, line in _lines(path, raw, bad)]
    if bad:
        raise DataError(bad[0].reason, path, bad[0].line)
    while names and not names[-1]:
        names.pop()
    if not names:
        raise DataError("label names file is empty", path)
    for i, name in enumerate(names):
        if not name:
            raise DataError("empty label name", path, i + 1)
        if name in names[:i]:
            raise DataError(f"duplicate label name {name!r}", path, i + 1)
    return names


def _as_id(key: str, names: list[str]) -> str | None:
    return names[int(key)] if _INT.fullmatch(key) and 0 <= int(key) < len(names) else None


def _through_names(keys: list[str], lines: list[int], names: list[str], names_path,
                   path) -> list[str | None]:
    """Each key through a label-names list: a name is itself, an id 0..k-1 is names[id], anything
    else None. A key that reads both ways as different labels (names that are integers, such as
    "2") is read as every key of the file can be: names when all are names, ids when all are
    ids; when both readings fit every key, or neither does, it is an error."""
    readings = [(key if key in names else None, _as_id(key, names)) for key in keys]
    both = [i for i, (name, by_id) in enumerate(readings) if name and by_id and name != by_id]
    if not both:
        return [name if name is not None else by_id for name, by_id in readings]
    all_names = all(name is not None for name, _ in readings)
    all_ids = all(by_id is not None for _, by_id in readings)
    if all_names != all_ids:
        return [name if all_names else by_id for name, by_id in readings]
    i = both[0]
    why = "every label of the file reads either way" if all_names else \
        "the file's other labels do not settle which"
    raise DataError(f"label {keys[i]!r} is a name in {os.fspath(names_path)} and also id {keys[i]}, "
                    f"which names {readings[i][1]!r}, and {why}: write the labels all as names or "
                    f"all as ids 0..{len(names) - 1}", path, lines[i])


def _file_labels(keys: list[str], lines: list[int], path) -> list[str]:
    """A training file's labels without a names file: when every label is an integer (an id
    column, as pandas would read it) each is str(int), "007" -> "7"; two spellings of one
    number ("01" and "1") are an error. Otherwise every label stays as written."""
    if not all(_INT.fullmatch(key) for key in keys):
        return keys
    first: dict[int, tuple[str, int]] = {}
    for key, line in zip(keys, lines):
        seen, seen_line = first.setdefault(int(key), (key, line))
        if seen != key:
            raise DataError(f"labels {seen!r} (line {seen_line}) and {key!r} are the same number in "
                            f"a file of integer labels: write each label one way", path, line)
    return [str(int(key)) for key in keys]


def _in_known(key: str, known: list[str]) -> str | None:
    """A key among a model's labels: as written, or as a number ("01" is the label "1")."""
    if key in known:
        return key
    return str(int(key)) if _INT.fullmatch(key) and str(int(key)) in known else None


def _known_label(key: str, known: list[str], column, line: int, id_hint: bool = True) -> str:
    """The model's label for a row's key (`_in_known`), or the row's "unknown label" error."""
    found = _in_known(key, known)
    if found is None:
        hint = "; pass --label-names to name integer ids" if id_hint and _INT.fullmatch(key) else ""
        raise _BadRow("unknown label", f"unknown label {key!r} in column {column!r} "
                      f"(known labels: {format_labels(known)}){hint}", line, column)
    return found


def _label_set_from_keys(keys: list[str]) -> list[str]:
    distinct = set(keys)
    if all(_INT.fullmatch(k) for k in distinct):
        return [str(i) for i in sorted(int(k) for k in distinct)]
    return sorted(distinct)


# ---------------------------------------------------------------- public API

def load_labelled(path, options: DataOptions = DataOptions(),
                  labels: Sequence[str] | None = None) -> LabelledData:
    """Read a labelled file. labels=None: a training file, the label set comes from the file
    (sorted names; integer labels sorted numerically; or the --label-names order). labels
    given: the model's saved order; a row label outside it is an error (or skipped)."""
    raw = _read_bytes(path)
    fmt = resolve_format(path, options)
    _check_not_empty(path, raw)
    names = read_label_names(options.label_names) if options.label_names else None
    text_col, label_col = options.text_column, options.label_column
    skipped: dict[str, int] = {}
    texts, keys, lines = [], [], []

    def bad_row(b: _BadRow):
        if not options.skip_bad_rows:
            raise DataError(b.reason, path, b.line, b.column)
        skipped[b.kind] = skipped.get(b.kind, 0) + 1

    known = list(labels) if labels is not None else None
    for record in _records(path, raw, fmt, (text_col, label_col), []):
        if isinstance(record, _BadRow):
            bad_row(record)
            continue
        number, row = record
        try:
            text = row[text_col]
            if not isinstance(text, str):
                raise _BadRow("bad text", f"text in column {text_col!r} is not a string", number)
            if not text.strip():
                raise _BadRow("empty text", f"empty text in column {text_col!r}", number, text_col)
            key = _label_key(row[label_col], number)
            if names is not None and key not in names and _as_id(key, names) is None:
                raise _BadRow("unknown label", f"unknown label {key!r} in column {label_col!r}: "
                              f"not an id 0..{len(names) - 1} or a name in "
                              f"{os.fspath(options.label_names)}", number)
            if names is None and known is not None:
                key = _known_label(key, known, label_col, number)
        except _BadRow as b:
            bad_row(b)
            continue
        texts.append(text)
        keys.append(key)
        lines.append(number)

    if names is not None:
        keys = _through_names(keys, lines, names, options.label_names, path)
        if known is not None:       # names the model does not have
            kept = []
            for i, (key, number) in enumerate(zip(keys, lines)):
                try:
                    keys[i] = _known_label(key, known, label_col, number, id_hint=False)
                    kept.append(i)
                except _BadRow as b:
                    bad_row(b)
            texts, keys, lines = ([seq[i] for i in kept] for seq in (texts, keys, lines))
    elif known is None:
        keys = _file_labels(keys, lines, path)
    if not texts:
        why = f" (skipped: {_describe(skipped)})" if skipped else ""
        raise DataError(f"no data rows{why}", path)
    label_list = known if known is not None else names if names is not None else \
        _label_set_from_keys(keys)
    index = {name: i for i, name in enumerate(label_list)}
    ids = [index[k] for k in keys]
    if labels is None and len(set(ids)) < 2:
        raise DataError(f"a training file needs at least 2 classes; every row is labelled "
                        f"{label_list[ids[0]]!r}", path, column=label_col)
    return LabelledData(path=os.fspath(path), sha256=hashlib.sha256(raw).hexdigest(), texts=texts,
                        labels=ids, label_names=list(label_list), lines=lines, skipped=skipped,
                        file_rows=len(texts))


def load_texts(path, options: DataOptions = DataOptions()) -> list[str]:
    """Unlabelled texts. .txt: one text per line (field `text_column` when the line has tabs);
    other formats: the text column. Blank lines are ignored."""
    return read_texts(path, options)[0]


def read_texts(path, options: DataOptions = DataOptions()) -> tuple[list[str], dict]:
    """(load_texts's texts, {reason: count} of the rows --skip-bad-rows left out)."""
    raw = _read_bytes(path)
    fmt = resolve_format(path, options)
    _check_not_empty(path, raw)
    texts: list[str] = []
    skipped: dict = {}
    col = options.text_column
    if fmt == "txt":
        index = _column_index(path, col, 0)
        bad: list = []
        records = []
        for number, line in _lines(path, raw, bad):
            records.extend(_drain(bad))
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t") if "\t" in line else [line]
            if "\t" in line and index >= len(fields):
                records.append(_BadRow("missing column", f"expected {index + 1} tab-separated "
                                                         f"fields, found {len(fields)}", number))
            else:
                records.append((number, {col: fields[index if "\t" in line else 0]}))
        records.extend(_drain(bad))
    else:
        records = _records(path, raw, fmt, (col,), [])
    for record in records:
        if isinstance(record, tuple):
            number, row = record
            text = row[col]
            if isinstance(text, str) and text.strip():
                texts.append(text)
                continue
            record = _BadRow("empty text", f"empty text in column {col!r}", number)
        if not options.skip_bad_rows:
            raise DataError(record.reason, path, record.line)
        skipped[record.kind] = skipped.get(record.kind, 0) + 1
    if not texts:
        raise DataError("no texts", path)
    return texts, skipped


def unlabeled_options(path, options: DataOptions) -> DataOptions:
    """The data options for an unlabelled file: a .txt file is one text per line (its column
    can only be an index), whatever --text-column names the labelled files' column."""
    if resolve_format(path, options) == "txt" and not str(options.text_column).isdigit():
        return replace(options, text_column="text")
    return options


def _describe(skipped: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))


def describe_skipped(skipped: dict[str, int]) -> str:
    """'skipped 3 rows: 2 empty text, 1 unknown label' (a LabelledData's `skipped`), or '' when
    nothing was skipped."""
    total = sum(skipped.values())
    return f"skipped {total} row{'s' * (total != 1)}: {_describe(skipped)}" if total else ""


def subsample(data: LabelledData, n: int | None, seed: int) -> LabelledData:
    """A seeded random subset of n rows without replacement (None or n >= len: unchanged).
    The first n of default_rng(seed).permutation(len): the same rows as the reference recipe."""
    if n is None or n >= len(data):
        return data
    if n < 1:
        raise ValueError(f"subsample size must be >= 1, got {n}")
    pick = np.random.default_rng(seed).permutation(len(data))[:n]
    return replace(data, texts=[data.texts[i] for i in pick], labels=[data.labels[i] for i in pick],
                   lines=[data.lines[i] for i in pick])


def class_weights_balanced(labels: Sequence[int], n_classes: int) -> np.ndarray:
    """n_samples / (n_classes * count[c]) per class, as sklearn's compute_class_weight('balanced')."""
    y = np.asarray(labels, dtype=np.int64)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"label ids must lie in 0..{n_classes - 1}")
    counts = np.bincount(y, minlength=n_classes)                      # (n_classes,)
    absent = np.flatnonzero(counts == 0)
    if absent.size:
        raise DataError(f"class weights need every class in the training rows; class id(s) "
                        f"{', '.join(map(str, absent.tolist()))} have none")
    return (len(y) / (n_classes * counts)).astype(np.float32)


def resample_indices(labels: Sequence[int], mode: str, seed: int) -> np.ndarray:
    """Row indices that balance the classes: 'over' draws extra rows (with replacement) up to
    the largest class count, 'under' keeps a random subset down to the smallest. Shuffled."""
    if mode not in ("over", "under"):
        raise ValueError(f"resample mode must be 'over' or 'under', got {mode!r}")
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    members = [np.flatnonzero(y == c) for c in classes]
    target = max(map(len, members)) if mode == "over" else min(map(len, members))
    picked = []
    for rows in members:
        if mode == "over":
            extra = rng.choice(rows, target - len(rows), replace=True)
            picked.append(np.concatenate([rows, extra]))
        else:
            picked.append(rng.choice(rows, target, replace=False))
    out = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    return rng.permutation(out).astype(np.int64)
