"""Click options for reading data files, shared by `teach`, `student` and `eval`."""
from __future__ import annotations

import click

from distill.data import FORMATS, DataOptions

_DATA_OPTIONS = [
    click.option("--format", "data_format", type=click.Choice(FORMATS), default=None,
                 help="Data file format. Default: from the extension (.csv .tsv .jsonl .txt)."),
    click.option("--text-column", default="text", show_default=True,
                 help="Column holding the text: header name or 0-based index (CSV/TSV), key (JSONL), "
                      "or 0-based index (headerless .txt, where the default means column 0)."),
    click.option("--label-column", default="label", show_default=True,
                 help="Column holding the label: header name or 0-based index (CSV/TSV), key (JSONL), "
                      "or 0-based index (headerless .txt, where the default means column 1)."),
    click.option("--label-names", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="File with one label name per line: line i names label id i, so the data may "
                      "give integer ids 0..k-1 or the names; for teach it also fixes the label order."),
    click.option("--skip-bad-rows", is_flag=True, default=False,
                 help="Skip bad rows (empty or non-string text, empty or bad label, a missing or "
                      "extra column, bad UTF-8, invalid JSON, an unknown label) and report how many and "
                      "why, instead of stopping at the first."),
]
_KEYS = ("data_format", "text_column", "label_column", "label_names", "skip_bad_rows")


def data_options(f):
    """Decorator adding --format, --text-column, --label-column, --label-names, --skip-bad-rows.
    They reach the command as the parameters data_format, text_column, label_column,
    label_names, skip_bad_rows (take **kwargs and call data_options_from)."""
    for option in reversed(_DATA_OPTIONS):
        f = option(f)
    return f


def data_options_from(kwargs: dict) -> DataOptions:
    """Pop the data options out of a command's kwargs into a DataOptions."""
    values = {key: kwargs.pop(key) for key in _KEYS if key in kwargs}
    return DataOptions(format=values.get("data_format"),
                       text_column=values.get("text_column", "text"),
                       label_column=values.get("label_column", "label"),
                       label_names=values.get("label_names"),
                       skip_bad_rows=bool(values.get("skip_bad_rows", False)))
