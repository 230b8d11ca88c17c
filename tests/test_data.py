"""distill.data: formats, label maps, every bad input (file + line in the message), helpers."""
import json
from collections import Counter

import click
import numpy as np
import pytest
from click.testing import CliRunner

from distill.data import (DataError, DataOptions, class_weights_balanced, describe_skipped,
                          file_sha256, load_labelled, load_texts, read_texts, resample_indices, subsample)
from distill.options import data_options, data_options_from


def write(path, text: str | bytes):
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def error(path, options=DataOptions(), labels=None) -> DataError:
    with pytest.raises(DataError) as info:
        load_labelled(path, options, labels)
    return info.value


def assert_error(err: DataError, path, line, *words):
    message = str(err)
    assert message.startswith(f"{path}, line {line}: " if line else f"{path}: "), message
    assert err.line == line
    for word in words:
        assert word in message, message


# ---------------------------------------------------------------- formats

def test_csv_quoted_fields_commas_multiline_and_bom(tmp_path):
    p = write(tmp_path / "d.csv", '\ufefftext,label\n"good, really good",pos\n'
              '"spans\ntwo lines",neg\n"say ""hi""",pos\n')
    d = load_labelled(p)
    assert d.texts == ["good, really good", "spans\ntwo lines", 'say "hi"']
    assert d.label_names == ["neg", "pos"]
    assert d.labels == [1, 0, 1]
    assert d.lines == [2, 3, 5]          # the multi-line record starts on line 3
    assert d.sha256 == file_sha256(p) and len(d) == 3 and d.skipped == {}


def test_tsv_keeps_quote_characters(tmp_path):
    p = write(tmp_path / "d.tsv", 'label\tsentence\n1\t" a quoted , thing\n0\tit \'s "dull\n')
    d = load_labelled(p, DataOptions(text_column="sentence"))
    assert d.texts == ['" a quoted , thing', 'it \'s "dull']
    assert d.label_names == ["0", "1"] and d.labels == [1, 0]


def test_jsonl_string_and_int_labels(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"body": "a", "y": 10}\n\n{"body": "b", "y": 2}\n'
              '{"body": "c", "y": "10"}\n')
    d = load_labelled(p, DataOptions(text_column="body", label_column="y"))
    assert d.label_names == ["2", "10"]   # numeric order, not string order
    assert d.labels == [1, 0, 1] and d.lines == [1, 3, 4]


def test_format_option_overrides_extension(tmp_path):
    p = write(tmp_path / "data.dat", "hello\tpos\nbye\tneg\n")
    d = load_labelled(p, DataOptions(format="txt"))
    assert d.texts == ["hello", "bye"] and d.label_names == ["neg", "pos"]


def test_headerless_txt_thucnews_style(tmp_path):
    names = write(tmp_path / "class.txt", "finance\nrealty\nstocks\n")
    p = write(tmp_path / "train.txt", "股市大涨\t2\n楼盘开盘\t1\n基金收益\t0\n\n新股上市\t2\n")
    d = load_labelled(p, DataOptions(label_names=str(names)))
    assert d.label_names == ["finance", "realty", "stocks"]
    assert d.labels == [2, 1, 0, 2] and d.lines == [1, 2, 3, 5]
    d = load_labelled(p)                              # no names: ids named str(id)
    assert d.label_names == ["0", "1", "2"] and d.labels == [2, 1, 0, 2]
    swapped = load_labelled(p, DataOptions(text_column="1", label_column="0", format="txt"))
    assert swapped.texts == ["2", "1", "0", "2"]      # columns by index


def test_label_names_order_and_names_accepted(tmp_path):
    names = write(tmp_path / "names.txt", "zeta\nalpha\nmid\n\n")
    p = write(tmp_path / "d.csv", "text,label\na,1\nb,zeta\nc,1\n")
    d = load_labelled(p, DataOptions(label_names=str(names)))
    assert d.label_names == ["zeta", "alpha", "mid"]  # the whole list, in file order
    assert d.labels == [1, 0, 1]


def test_string_labels_sorted_by_name(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\na,positive\nb,negative\nc,neutral\nd,10\n")
    d = load_labelled(p)
    assert d.label_names == ["10", "negative", "neutral", "positive"]
    assert d.labels == [3, 1, 2, 0]


def test_model_order_labels(tmp_path):
    p = write(tmp_path / "dev.csv", "text,label\na,positive\nb,negative\nc,positive\n")
    d = load_labelled(p, labels=["positive", "negative", "neutral"])
    assert d.label_names == ["positive", "negative", "neutral"]
    assert d.labels == [0, 1, 0]
    one_class = write(tmp_path / "one.csv", "text,label\na,positive\n")
    assert load_labelled(one_class, labels=["negative", "positive"]).labels == [1]


def test_model_order_integer_labels_and_label_names(tmp_path):
    p = write(tmp_path / "dev.tsv", "label\tsentence\n01\tx\n0\ty\n")
    assert load_labelled(p, DataOptions(text_column="sentence"), labels=["0", "1"]).labels == [1, 0]
    names = write(tmp_path / "names.txt", "neg\npos\n")
    d = load_labelled(p, DataOptions(text_column="sentence", label_names=str(names)),
                      labels=["pos", "neg"])
    assert d.labels == [0, 1]
    err = error(p, DataOptions(text_column="sentence"), labels=["neg", "pos"])  # ids, no names
    assert_error(err, p, 2, "unknown label '01'", "--label-names")


def test_integer_labels_read_as_numbers_only_in_an_integer_column(tmp_path):
    ids = load_labelled(write(tmp_path / "ids.csv", "text,label\na,007\nb,3\nc,007\n"))
    assert ids.label_names == ["3", "7"] and ids.labels == [1, 0, 1]   # as pandas reads an id column
    mixed = load_labelled(write(tmp_path / "mixed.csv", "text,label\na,01\nb,1\nc,book flight\nd,007\n"))
    assert mixed.label_names == ["007", "01", "1", "book flight"]      # labels as written
    assert mixed.labels == [1, 2, 3, 0]
    clash = write(tmp_path / "clash.csv", "text,label\na,1\nb,2\nc,01\n")
    assert_error(error(clash), clash, 4, "'1' (line 2) and '01' are the same number")


def test_label_names_that_are_integers_read_as_the_file_reads(tmp_path):
    names = write(tmp_path / "names.txt", "10\n2\n5\n")
    options = DataOptions(label_names=str(names))
    as_names = write(tmp_path / "names.csv", "text,label\na,10\nb,2\nc,5\nd,2\n")
    assert load_labelled(as_names, options).labels == [0, 1, 2, 1]       # "10" is no id: names
    as_ids = write(tmp_path / "ids.csv", "text,label\na,0\nb,2\nc,1\n")
    assert load_labelled(as_ids, options).labels == [0, 2, 1]            # "0" is no name: ids
    neither = write(tmp_path / "neither.csv", "text,label\na,10\nb,0\nc,2\n")
    assert_error(error(neither, options), neither, 4, "label '2' is a name", "also id 2, which names '5'",
                 "do not settle")
    either = write(tmp_path / "either.csv", "text,label\na,0\nb,1\n")
    swapped = write(tmp_path / "swapped.txt", "1\n0\n")
    assert_error(error(either, DataOptions(label_names=str(swapped))), either, 2,
                 "every label of the file reads either way")


def test_load_texts(tmp_path):
    plain = write(tmp_path / "u.txt", "first text\n\nsecond\tignored\n  \nthird\n")
    assert load_texts(plain) == ["first text", "second", "third"]
    assert load_texts(write(tmp_path / "u.jsonl", '{"text": "a"}\n{"text": "b", "x": 1}\n')) == ["a", "b"]
    assert load_texts(write(tmp_path / "u.csv", "id,text\n1,a b\n2,c\n")) == ["a b", "c"]
    bad = write(tmp_path / "b.csv", "text\nok\n\" \"\n")
    with pytest.raises(DataError, match=r"b\.csv, line 3: empty text"):
        load_texts(bad)
    assert load_texts(bad, DataOptions(skip_bad_rows=True)) == ["ok"]
    assert read_texts(bad, DataOptions(skip_bad_rows=True)) == (["ok"], {"empty text": 1})
    utf8 = tmp_path / "v.txt"
    utf8.write_bytes(b"good\n\xff bad\nfine\n")
    assert read_texts(utf8, DataOptions(skip_bad_rows=True)) == (["good", "fine"], {"invalid UTF-8": 1})
    assert read_texts(plain) == (["first text", "second", "third"], {})       # blank lines are not rows


def test_read_texts_counts_every_undecodable_line_when_skipping(tmp_path):
    p = write(tmp_path / "u.txt", b"a fine film\n\xff bad\nanother text\n\xfe bad too\n\xfd and more\n")
    assert read_texts(p, DataOptions(skip_bad_rows=True)) == (["a fine film", "another text"],
                                                             {"invalid UTF-8": 3})


# ---------------------------------------------------------------- bad inputs

def test_missing_file_and_directory(tmp_path):
    assert_error(error(tmp_path / "nope.csv"), tmp_path / "nope.csv", None, "no such file")
    assert_error(error(tmp_path), tmp_path, None, "directory")


def test_empty_file_and_header_only(tmp_path):
    for name in ("e.csv", "e.jsonl", "e.txt", "e.tsv"):
        assert_error(error(write(tmp_path / name, "")), tmp_path / name, None, "empty")
    header_only = write(tmp_path / "h.csv", "text,label\n")
    assert_error(error(header_only), header_only, None, "no data rows")


def test_missing_header_column_names_existing_columns(tmp_path):
    p = write(tmp_path / "d.csv", "review,label\nnice,pos\n")
    assert_error(error(p), p, 1, "no column 'text'", "review, label")
    # a file-level problem: --skip-bad-rows does not hide it
    assert_error(error(p, DataOptions(skip_bad_rows=True)), p, 1, "no column 'text'")


def test_a_headerless_column_past_the_fields_names_its_option(tmp_path):
    p = write(tmp_path / "d.txt", "good film\tpositive\nbad film\tnegative\n")
    assert_error(error(p, DataOptions(label_column="9")), p, 1,
                 "expected 10 tab-separated fields (--label-column is column 9), found 2")
    assert_error(error(p, DataOptions(text_column="4")), p, 1, "(--text-column is column 4)")


def test_short_row(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\na,pos\nb\nc,neg\n")
    assert_error(error(p), p, 3, "'label'")


def test_unclosed_and_stray_quotes_are_errors(tmp_path):
    """Not the rest of the file swallowed into one cell, nor a quote silently dropped."""
    p = write(tmp_path / "d.csv", 'label,text\npos,hello\nneg,"unclosed quote\nneg,bad movie\npos,great\n')
    assert_error(error(p), p, 3, "malformed CSV", "never closed")
    q = write(tmp_path / "q.csv", 'text,label\nfine,pos\n"he said "hi" ok",neg\n')
    assert_error(error(q), q, 3, "malformed CSV", "must be doubled")
    assert load_labelled(write(tmp_path / "ok.csv", 'text,label\n"he said ""hi"" ok",neg\nb,pos\n')
                         ).texts == ['he said "hi" ok', "b"]


def test_rows_with_extra_fields_are_errors(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\nhello, world,pos\nbad movie,neg\ngreat,pos\n")
    assert_error(error(p), p, 2, "3 comma-separated fields, the header 2", "unquoted separator")
    t = write(tmp_path / "d.tsv", "text\tlabel\nfine\tpos\nextra\tneg\tjunk\n")
    assert_error(error(t), t, 3, "3 tab-separated fields, the header 2")
    x = write(tmp_path / "d.txt", "good\t0\nbad\t1\t2\n")
    assert_error(error(x), x, 2, "3 tab-separated fields where the first row has 2")
    d = load_labelled(p, DataOptions(skip_bad_rows=True))
    assert d.texts == ["bad movie", "great"] and d.skipped == {"extra fields": 1}
    # trailing empty cells (a spreadsheet's export) are not extra fields
    e = write(tmp_path / "e.csv", "text,label\na,pos,\nb,neg,,\n")
    assert load_labelled(e).texts == ["a", "b"]


def test_text_and_label_from_the_same_column_is_refused(tmp_path):
    x = write(tmp_path / "d.txt", "0\thello there\n1\tbad movie\n")
    assert_error(error(x, DataOptions(text_column="1")), x, None, "same column 1", "--label-column")
    assert load_labelled(x, DataOptions(text_column="1", label_column="0")).texts == ["hello there", "bad movie"]
    c = write(tmp_path / "d.csv", "text,label\na,pos\nb,neg\n")
    assert_error(error(c, DataOptions(label_column="text")), c, None, "same column 0")


def test_a_lone_carriage_return_is_not_a_line_break(tmp_path):
    """Line numbers count "\\n" as editors and `wc -l` do."""
    p = write(tmp_path / "d.csv", 'text,label\n"first\rpart",pos\nok,neg\n,pos\n')
    assert_error(error(p), p, 4, "empty text")
    assert load_labelled(p, DataOptions(skip_bad_rows=True)).texts == ["first\rpart", "ok"]
    crlf = write(tmp_path / "crlf.csv", "text,label\r\na,pos\r\n ,neg\r\n")
    assert_error(error(crlf), crlf, 3, "empty text")


def test_crlf_headerless_txt_text_in_the_last_column_has_no_carriage_return(tmp_path):
    p = write(tmp_path / "d.txt", b"pos\tgood film\r\nneg\tdull film\r\n")
    d = load_labelled(p, DataOptions(text_column="1", label_column="0"))
    assert d.texts == ["good film", "dull film"]
    assert d.label_names == ["neg", "pos"] and d.labels == [1, 0]


def test_a_column_name_twice_in_the_header(tmp_path):
    p = write(tmp_path / "d.csv", "text,label,text\na,pos,b\nc,neg,d\n")
    assert_error(error(p), p, 1, "'text' appear more than once")


def test_empty_text(tmp_path):
    p = write(tmp_path / "train.csv", "text,label\na,pos\n" + "b,neg\n" * 14 + "   ,pos\n")
    assert_error(error(p), p, 17, "empty text in column 'text'")
    assert error(p).column == "text"


def test_empty_label_names_its_column(tmp_path):
    p = write(tmp_path / "train.csv", "review,sentiment\na,pos\nb,  \n")
    err = error(p, DataOptions(text_column="review", label_column="sentiment"))
    assert_error(err, p, 3, "empty label in column 'sentiment'")
    assert err.column == "sentiment"


def test_bad_utf8_names_its_line(tmp_path):
    p = write(tmp_path / "d.csv", b"text,label\nok,pos\nalso ok,neg\nbad \xff\xfe,pos\nfine,neg\n")
    assert_error(error(p), p, 4, "UTF-8")
    txt = write(tmp_path / "d.txt", b"ok\t1\n\xc3(\t0\n")
    assert_error(error(txt), txt, 2, "UTF-8")


def test_bad_utf8_after_multiline_record(tmp_path):
    p = write(tmp_path / "d.csv", b'text,label\n"two\nlines",pos\n\xffx,neg\nz,neg\n')
    assert_error(error(p), p, 4, "UTF-8")
    d = load_labelled(p, DataOptions(skip_bad_rows=True))
    assert d.lines == [2, 5] and d.skipped == {"invalid UTF-8": 1}


def test_bad_utf8_column_is_1_based(tmp_path):
    p = write(tmp_path / "d.csv", b"text,label\ngood film,pos\nab\xffc,neg\n")  # 3rd byte of line 3
    assert_error(error(p), p, 3, "invalid UTF-8 (byte 0xff at column 3)")
    first = write(tmp_path / "first.txt", b"\xfe bad\t0\n")
    assert_error(error(first), first, 1, "invalid UTF-8 (byte 0xfe at column 1)")


def test_jsonl_boolean_labels_are_refused(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"text": "good", "label": true}\n{"text": "bad", "label": false}\n')
    assert_error(error(p), p, 1, "label must be a string or an integer, got true")
    q = write(tmp_path / "q.jsonl", '{"text": "good", "label": "pos"}\n{"text": "bad", "label": false}\n')
    assert_error(error(q), q, 2, "label must be a string or an integer, got false")


def test_invalid_json_and_non_object(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    assert_error(error(p), p, 2, "invalid JSON")
    unclosed = write(tmp_path / "u.jsonl", '{"text": "a", "label": "x"}\n{"text":"b","label":"y"\n')
    assert_error(error(unclosed), unclosed, 2, "Expecting ',' delimiter (column 24)")
    q = write(tmp_path / "q.jsonl", '{"text": "a", "label": "x"}\n["b", "y"]\n')
    assert_error(error(q), q, 2, "JSON object")
    r = write(tmp_path / "r.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n')
    assert_error(error(r), r, 2, "'label'")


def test_unknown_extension(tmp_path):
    p = write(tmp_path / "d.xlsx", "text,label\n")
    assert_error(error(p), p, None, "'.xlsx'", "--format")


def test_single_class_training_file(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\na,pos\nb,pos\n")
    assert_error(error(p), p, None, "2 classes", "'pos'")
    names = write(tmp_path / "n.txt", "neg\npos\n")
    assert_error(error(p, DataOptions(label_names=str(names))), p, None, "2 classes")


def test_unknown_label_in_eval_file(tmp_path):
    p = write(tmp_path / "dev.csv", "text,label\na,positive\nb,negative\nc,meh\n")
    err = error(p, labels=["negative", "positive"])
    assert_error(err, p, 4, "unknown label 'meh'", "negative, positive")


def test_messages_quote_at_most_the_start_of_a_huge_value(tmp_path):
    """With the columns swapped, a 1 MB text is taken for a label: its "unknown label" error was a
    1 MB line."""
    huge = "x" * 1_000_000
    p = write(tmp_path / "dev.csv", f"text,label\na,positive\nb,{huge}\n")
    err = error(p, labels=["negative", "positive"])
    assert_error(err, p, 3, f"unknown label '{'x' * 60}... (1,000,000 characters)'", "negative, positive")
    assert len(str(err)) < 300


def test_a_label_in_another_unicode_normal_form_is_named_as_such(tmp_path):
    """'café' as e + U+0301 against the model's 'café' (one code point) printed the same on both
    sides of "unknown label 'café' ... (known labels: café, negative)"."""
    nfd, nfc = "cafe\u0301", "caf\u00e9"
    p = write(tmp_path / "dev.csv", f"text,label\na,negative\nb,{nfd}\n")
    err = error(p, labels=[nfc, "negative"])
    assert_error(err, p, 3, f"unknown label '{nfd}'",
                 "it is 'cafe\\u0301' and the known label is 'caf\\xe9': the same text in another Unicode "
                 "normal form (write both one way, e.g. NFC)")


def test_label_lists_in_messages_stop_after_twenty():
    from distill.data import format_labels

    assert format_labels([f"c{i}" for i in range(20)]) == ", ".join(f"c{i}" for i in range(20))
    assert format_labels([f"c{i}" for i in range(2000)]) == ", ".join(f"c{i}" for i in range(20)) + ", ... (2,000 labels)"
    assert format_labels(["a, b", "c"]) == "'a, b', 'c'"


def test_label_names_and_model_labels_are_looked_up_by_name_not_position():
    """A LabelList answers `in` from a set (files of 200k rows against thousands of labels were
    checked by list scans: seconds), and is otherwise the list, order kept."""
    from distill.data import LabelList

    names = LabelList(["b", "a", "c"])
    assert names == ["b", "a", "c"] and names[1] == "a" and "c" in names and "d" not in names

    class Counted(str):              # counts the comparisons a lookup makes
        calls = 0
        __hash__ = str.__hash__

        def __eq__(self, other):
            Counted.calls += 1
            return str.__eq__(self, other)

    many = LabelList(Counted(f"class {i}") for i in range(2000))
    assert "class 1999" in many and "class 2000" not in many
    assert Counted.calls <= 4                          # a list scan makes about 4,000


def test_label_id_outside_label_names(tmp_path):
    names = write(tmp_path / "n.txt", "a\nb\n")
    p = write(tmp_path / "d.txt", "x\t0\ny\t1\nz\t2\n")
    assert_error(error(p, DataOptions(label_names=str(names))), p, 3, "unknown label '2'")


def test_skip_bad_rows_counts_by_reason(tmp_path):
    p = write(tmp_path / "d.jsonl", b"\n".join([
        b'{"text": "good", "label": "pos"}',
        b'{"text": "  ", "label": "neg"}',          # empty text
        b'{"text": "x"}',                           # missing column
        b'not json',                                # invalid JSON
        b'{"text": "bad \xff", "label": "neg"}',    # invalid UTF-8
        b'{"text": "fine", "label": "neg"}',
        b'{"text": "odd", "label": "meh"}',         # unknown label (eval)
        b'7',                                       # not an object
        b'{"text": "", "label": "pos"}',            # empty text
    ]) + b"\n")
    d = load_labelled(p, DataOptions(skip_bad_rows=True), labels=["neg", "pos"])
    assert d.texts == ["good", "fine"] and d.lines == [1, 6]
    assert d.skipped == {"empty text": 2, "missing column": 1, "invalid JSON": 1,
                         "invalid UTF-8": 1, "unknown label": 1, "not a JSON object": 1}
    assert describe_skipped(d.skipped) == ("skipped 7 rows: 2 empty text, 1 invalid JSON, 1 invalid UTF-8, "
                                          "1 missing column, 1 not a JSON object, 1 unknown label")
    assert describe_skipped({}) == ""


def test_skip_bad_rows_all_bad_still_fails(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\n ,a\n ,b\n")
    assert_error(error(p, DataOptions(skip_bad_rows=True)), p, None, "no data rows", "2 empty text")


def test_bad_label_names_file(tmp_path):
    p = write(tmp_path / "d.txt", "x\t0\ny\t1\n")
    dup = write(tmp_path / "dup.txt", "a\nb\na\n")
    with pytest.raises(DataError, match=r"dup\.txt, line 3: duplicate label name 'a'"):
        load_labelled(p, DataOptions(label_names=str(dup)))
    with pytest.raises(DataError, match="no such file"):
        load_labelled(p, DataOptions(label_names=str(tmp_path / "missing.txt")))


# ---------------------------------------------------------------- helpers

def test_subsample_is_seeded_and_without_replacement(tmp_path):
    rows = "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(100))
    d = load_labelled(write(tmp_path / "d.csv", "text,label\n" + rows))
    a, b, c = subsample(d, 30, seed=0), subsample(d, 30, seed=0), subsample(d, 30, seed=1)
    assert len(a) == 30 and a.texts == b.texts and a.texts != c.texts
    assert a.summary()["rows"] == 30 and a.summary()["file_rows"] == d.summary()["file_rows"] == 100
    assert len(set(a.texts)) == 30
    assert all(d.texts[d.lines.index(line)] == t for t, line in zip(a.texts, a.lines))
    assert all(d.labels[d.texts.index(t)] == y for t, y in zip(a.texts, a.labels))
    # same rows as the reference recipe's `default_rng(0).permutation(n)[:N]`
    assert a.texts == [d.texts[i] for i in np.random.default_rng(0).permutation(100)[:30]]
    assert subsample(d, None, 0) is d and subsample(d, 100, 0) is d and subsample(d, 500, 0) is d


def test_class_weights_equal_sklearn():
    from sklearn.utils.class_weight import compute_class_weight
    rng = np.random.default_rng(0)
    for k in (2, 3, 7):
        y = np.concatenate([np.arange(k), rng.integers(0, k, 200) ** 1])
        y = np.where(rng.random(y.size) < 0.5, y, 0)      # skew toward class 0
        ours = class_weights_balanced(y.tolist(), k)
        expected = compute_class_weight("balanced", classes=np.arange(k), y=y)
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="class id"):
        class_weights_balanced([0, 0, 2], 3)


@pytest.mark.parametrize("mode", ["over", "under"])
def test_resample_counts(mode):
    labels = [0] * 50 + [1] * 10 + [2] * 25
    idx = resample_indices(labels, mode, seed=3)
    counts = Counter(labels[i] for i in idx)
    target = 50 if mode == "over" else 10
    assert counts == {0: target, 1: target, 2: target}
    assert np.array_equal(idx, resample_indices(labels, mode, seed=3))
    assert not np.array_equal(idx, resample_indices(labels, mode, seed=4))
    if mode == "over":   # every original row kept at least once
        assert set(idx.tolist()) == set(range(len(labels)))
    else:                # no row twice
        assert len(set(idx.tolist())) == idx.size
    with pytest.raises(ValueError):
        resample_indices(labels, "sideways", 0)


def test_click_data_options(tmp_path):
    names = write(tmp_path / "n.txt", "a\nb\n")
    seen = {}

    @click.command()
    @click.option("--epochs", type=int, default=1)
    @data_options
    def cmd(**kwargs):
        seen["options"] = data_options_from(kwargs)
        seen["rest"] = kwargs

    runner = CliRunner()
    result = runner.invoke(cmd, ["--format", "tsv", "--text-column", "sentence", "--label-names",
                                 str(names), "--skip-bad-rows", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert seen["options"] == DataOptions(format="tsv", text_column="sentence", label_column="label",
                                          label_names=str(names), skip_bad_rows=True)
    assert seen["rest"] == {"epochs": 3}
    assert runner.invoke(cmd, []).exit_code == 0 and seen["options"] == DataOptions()
    help_text = runner.invoke(cmd, ["--help"]).output
    for flag in ("--format", "--text-column", "--label-column", "--label-names", "--skip-bad-rows"):
        assert flag in help_text
    assert runner.invoke(cmd, ["--format", "xls"]).exit_code != 0


def test_shared_data(shared_data):
    sst_train = load_labelled(shared_data / "sst2" / "train.tsv", DataOptions(text_column="sentence"))
    sst_dev = load_labelled(shared_data / "sst2" / "dev.tsv", DataOptions(text_column="sentence"),
                            labels=sst_train.label_names)
    assert (len(sst_train), len(sst_dev)) == (67349, 872)
    assert sst_train.label_names == ["0", "1"] and set(sst_dev.labels) == {0, 1}
    names_file = shared_data / "thucnews" / "class.txt"
    options = DataOptions(label_names=str(names_file))
    train = load_labelled(shared_data / "thucnews" / "train.txt", options)
    test = load_labelled(shared_data / "thucnews" / "test.txt", options, labels=train.label_names)
    names = names_file.read_text(encoding="utf-8").split()
    assert len(names) == 10 and train.label_names == names
    assert (len(train), len(test)) == (10000, 10000)
    assert set(train.labels) == set(test.labels) == set(range(10))
    assert json.dumps(train.label_names, ensure_ascii=False)


# ---------------------------------------------------------------- encodings and line ends

@pytest.mark.parametrize("encoding, bom_name", [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"),
                                                ("utf-32", "UTF-32"), ("utf-32-be", "UTF-32")])
@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.txt", "d.jsonl"])
def test_a_utf16_or_utf32_file_is_refused_even_with_skip_bad_rows(tmp_path, encoding, bom_name, name):
    """Excel's "Unicode Text" is UTF-16 with a byte order mark: a file-level error, never rows
    of NUL-laden text (the .txt reader used to accept them with --skip-bad-rows)."""
    body = {"d.csv": "text,label\r\nbook a flight,book\r\nplay a song,play\r\n",
            "d.tsv": "text\tlabel\r\nbook a flight\tbook\r\nplay a song\tplay\r\n",
            "d.txt": "book a flight\tbook\r\nplay a song\tplay\r\n",
            "d.jsonl": '{"text": "book a flight", "label": "book"}\n{"text": "play", "label": "play"}\n'}[name]
    bom = "\ufeff" if encoding.endswith("-be") else ""  # "utf-16"/"utf-32" write their own (LE here)
    p = write(tmp_path / name, (bom + body).encode(encoding))
    for options in (DataOptions(), DataOptions(skip_bad_rows=True)):
        assert_error(error(p, options), p, None, f"the file is {bom_name}", "save it as UTF-8")
        with pytest.raises(DataError, match="save it as UTF-8"):
            load_texts(p, options)
    names = write(tmp_path / "names.txt", (bom + "book\nplay\n").encode(encoding))
    good = write(tmp_path / "good.txt", "book a flight\t0\nplay a song\t1\n")
    assert_error(error(good, DataOptions(label_names=str(names))), names, None, f"the file is {bom_name}")


def test_nul_bytes_are_a_file_error_naming_the_line_even_with_skip_bad_rows(tmp_path):
    """UTF-16 without a byte order mark (or a binary file) has NUL bytes: no row of it is text."""
    no_bom = write(tmp_path / "d.txt", "book a flight\tbook\nplay a song\tplay\n".encode("utf-16-le"))
    for options in (DataOptions(), DataOptions(skip_bad_rows=True)):
        assert_error(error(no_bom, options), no_bom, 1, "NUL byte at column 2", "save it as UTF-8")
    one = write(tmp_path / "d.csv", b"\xef\xbb\xbftext,label\na,pos\nb\x00c,neg\nd,neg\n")
    for options in (DataOptions(), DataOptions(skip_bad_rows=True)):
        assert_error(error(one, options), one, 3, "NUL byte at column 2")
    jsonl = write(tmp_path / "d.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b\x00", "label": "y"}\n')
    assert_error(error(jsonl, DataOptions(skip_bad_rows=True)), jsonl, 2, "NUL byte at column 12")


def test_nul_after_a_utf8_bom_on_line_1_counts_columns_without_the_bom(tmp_path):
    p = write(tmp_path / "d.csv", b"\xef\xbb\xbftext,la\x00bel\ngood,pos\n")  # NUL is the 8th character
    assert_error(error(p), p, 1, "NUL byte at column 8:")


@pytest.mark.parametrize("name, body", [("d.csv", "text,label\rgood movie,pos\rbad movie,neg\r"),
                                        ("d.tsv", "text\tlabel\rgood movie\tpos\rbad movie\tneg\r"),
                                        ("d.txt", "good movie\tpos\rbad movie\tneg\r"),
                                        ("d.jsonl", '{"text": "a", "label": "x"}\r{"text": "b", "label": "y"}\r')])
def test_carriage_return_only_line_ends_are_refused(tmp_path, name, body):
    """Old Mac line ends: one long line to the readers, and Python's csv hint ("universal-newline
    mode") means nothing to a user."""
    p = write(tmp_path / name, body)
    for options in (DataOptions(), DataOptions(skip_bad_rows=True)):
        err = error(p, options)
        assert_error(err, p, None, "carriage return (\\r) only", "\\n or \\r\\n line ends")
        assert "universal-newline" not in str(err)


def test_a_lone_carriage_return_in_an_unquoted_field_names_the_line_and_the_cause(tmp_path):
    mixed = write(tmp_path / "d.csv", "text,label\r\ngood\rmovie,pos\r\nbad,neg\r\n")
    err = error(mixed)
    assert_error(err, mixed, 2, "malformed CSV: a carriage return (\\r) inside a field that is not quoted")
    assert "universal-newline" not in str(err)
    tsv = write(tmp_path / "d.tsv", "text\tlabel\ngood\rmovie\tpos\nbad\tneg\n")
    assert_error(error(tsv), tsv, 2, "malformed TSV: a carriage return (\\r) inside a field")
    quoted = write(tmp_path / "q.csv", 'text,label\n"good\rmovie",pos\nbad,neg\n')  # still fine
    assert load_labelled(quoted).texts == ["good\rmovie", "bad"]
