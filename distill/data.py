"""Labelled text files -> rows and label ids (CSV, TSV, JSONL, headerless text<TAB>label .txt).

Every bad input raises `DataError` naming the file, the 1-based line and the reason (reading and
parsing the file is `records.py`; this module turns its records into texts, labels and label
ids). With `skip_bad_rows`, bad rows are dropped and counted by reason; file-level problems still
raise. numpy and the standard library only.
"""
from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from .records import (INT, BadRow, DataError, check_not_empty, file_sha256, read_bytes, records,
                      text_lines, unlabeled_txt_records)

__all__ = ["DataError", "DataOptions", "LabelledData", "FORMATS", "file_sha256", "resolve_format",
           "format_labels", "read_label_names", "load_labelled", "load_texts", "read_texts",
           "unlabeled_options", "describe_skipped", "subsample", "class_weights_balanced",
           "resample_indices"]

FORMATS = ("csv", "tsv", "jsonl", "txt")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".txt": "txt"}


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


# ---------------------------------------------------------------- labels

def _label_key(value, line: int, column: str = "label") -> str:
    """A raw label as a string, as written (stripped); a JSON integer (or integral float) as
    str(int). Integer strings are compared as numbers later, by `_file_labels`."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRow("bad label", f"label must be a string or an integer, got {json.dumps(value)}",
                      line)
    if isinstance(value, float):
        if not value.is_integer():
            raise BadRow("bad label", f"label must be a string or an integer, got {value}", line)
        value = int(value)
    text = str(value).strip()
    if not text:
        raise BadRow("empty label", f"empty label in column {column!r}", line, column)
    return text


def format_labels(labels: Sequence[str], limit: int = 20) -> str:
    """Labels for a message: plain, or each quoted when one holds a comma (`a, b` is one label);
    past `limit`, the first ones and how many there are (a message, not a listing)."""
    labels = list(labels)
    shown = [shorten(name) for name in labels[:limit]]
    text = ", ".join(map(repr, shown) if any("," in name for name in shown) else shown)
    return text + (f", ... ({len(labels):,} labels)" if len(labels) > limit else "")


def shorten(value: str, limit: int = 60) -> str:
    """A value from the user's file cut for a message (a text column taken for the labels can
    hold a megabyte)."""
    return value if len(value) <= limit else f"{value[:limit]}... ({len(value):,} characters)"


class LabelList(list):
    """A list of label names whose `in` is a set lookup: files are checked row by row against
    names files and models that may hold thousands of labels."""

    def __init__(self, names=()):
        super().__init__(names)
        self._members = frozenset(self)
        self._by_nfc = None

    def __contains__(self, name) -> bool:
        return name in self._members

    def written_otherwise(self, key: str) -> str | None:
        """The label that is `key` in another Unicode normal form ("é" as one code point or as
        "e" + U+0301), which prints the same: a label file and a data file typed apart."""
        if self._by_nfc is None:
            self._by_nfc = {unicodedata.normalize("NFC", name): name for name in self}
        other = self._by_nfc.get(unicodedata.normalize("NFC", key))
        return other if other != key else None


def read_label_names(path) -> list[str]:
    """One label name per line; trailing blank lines ignored."""
    raw = read_bytes(path)
    bad: list = []
    names = [line.strip() for _, line in text_lines(path, raw, bad)]
    if bad:
        raise DataError(bad[0].reason, path, bad[0].line)
    while names and not names[-1]:
        names.pop()
    if not names:
        raise DataError("label names file is empty", path)
    seen = set()
    for i, name in enumerate(names):
        if not name:
            raise DataError("empty label name", path, i + 1)
        if name in seen:
            raise DataError(f"duplicate label name {shorten(name)!r}", path, i + 1)
        seen.add(name)
    return names


def _as_id(key: str, names: list[str]) -> str | None:
    return names[int(key)] if INT.fullmatch(key) and 0 <= int(key) < len(names) else None


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
    if not all(INT.fullmatch(key) for key in keys):
        return keys
    first: dict[int, tuple[str, int]] = {}
    for key, line in zip(keys, lines):
        seen, seen_line = first.setdefault(int(key), (key, line))
        if seen != key:
            raise DataError(f"labels {shorten(seen)!r} (line {seen_line}) and {shorten(key)!r} are the same "
                            f"number in a file of integer labels: write each label one way", path, line)
    return [str(int(key)) for key in keys]


def _in_known(key: str, known: list[str]) -> str | None:
    """A key among a model's labels: as written, or as a number ("01" is the label "1")."""
    if key in known:
        return key
    return str(int(key)) if INT.fullmatch(key) and str(int(key)) in known else None


def _known_label(key: str, known: list[str], column, line: int, id_hint: bool = True) -> str:
    """The model's label for a row's key (`_in_known`), or the row's "unknown label" error."""
    found = _in_known(key, known)
    if found is None:
        hint = "; pass --label-names to name integer ids" if id_hint and INT.fullmatch(key) else ""
        twin = known.written_otherwise(key) if isinstance(known, LabelList) else None
        if twin is not None:
            hint += (f"; it is {ascii(key)} and the known label is {ascii(twin)}: the same text in "
                     "another Unicode normal form (write both one way, e.g. NFC)")
        raise BadRow("unknown label", f"unknown label {shorten(key)!r} in column {column!r} "
                      f"(known labels: {format_labels(known)}){hint}", line, column)
    return found


def _label_set_from_keys(keys: list[str]) -> list[str]:
    distinct = set(keys)
    if all(INT.fullmatch(k) for k in distinct):
        return [str(i) for i in sorted(int(k) for k in distinct)]
    return sorted(distinct)


# ---------------------------------------------------------------- public API

def load_labelled(path, options: DataOptions = DataOptions(),
                  labels: Sequence[str] | None = None) -> LabelledData:
    """Read a labelled file. labels=None: a training file, the label set comes from the file
    (sorted names; integer labels sorted numerically; or the --label-names order). labels
    given: the model's saved order; a row label outside it is an error (or skipped)."""
    raw = read_bytes(path)
    fmt = resolve_format(path, options)
    check_not_empty(path, raw)
    names = LabelList(read_label_names(options.label_names)) if options.label_names else None
    text_col, label_col = options.text_column, options.label_column
    skipped: dict[str, int] = {}
    texts, keys, lines = [], [], []

    def bad_row(b: BadRow):
        if not options.skip_bad_rows:
            raise DataError(b.reason, path, b.line, b.column)
        skipped[b.kind] = skipped.get(b.kind, 0) + 1

    known = LabelList(labels) if labels is not None else None
    for record in records(path, raw, fmt, (text_col, label_col), []):
        if isinstance(record, BadRow):
            bad_row(record)
            continue
        number, row = record
        try:
            text = row[text_col]
            if not isinstance(text, str):
                raise BadRow("bad text", f"text in column {text_col!r} is not a string", number)
            if not text.strip():
                raise BadRow("empty text", f"empty text in column {text_col!r}", number, text_col)
            key = _label_key(row[label_col], number, label_col)
            if names is not None and key not in names and _as_id(key, names) is None:
                raise BadRow("unknown label", f"unknown label {shorten(key)!r} in column {label_col!r}: "
                              f"not an id 0..{len(names) - 1} or a name in "
                              f"{os.fspath(options.label_names)}", number)
            if names is None and known is not None:
                key = _known_label(key, known, label_col, number)
        except BadRow as b:
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
                except BadRow as b:
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
    raw = read_bytes(path)
    fmt = resolve_format(path, options)
    check_not_empty(path, raw)
    texts: list[str] = []
    skipped: dict = {}
    col = options.text_column
    rows = unlabeled_txt_records(path, raw, col, []) if fmt == "txt" else \
        records(path, raw, fmt, (col,), [])
    for record in rows:
        if isinstance(record, tuple):
            number, row = record
            text = row[col]
            if isinstance(text, str) and text.strip():
                texts.append(text)
                continue
            record = BadRow("empty text", f"empty text in column {col!r}", number)
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
