"""distill.metrics against scikit-learn on random inputs, ties in the scores included."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distill.metrics import (_font_families, _unrenderable, accuracy, confusion_matrix, evaluate, format_report,
                             macro_f1, plot_confusion_matrix, roc_auc)

sk = pytest.importorskip("sklearn.metrics")

FAST = settings(max_examples=60, deadline=None)


@st.composite
def predictions(draw, min_classes=2, max_classes=6, all_classes=False):
    """(y_true, probs) with probs drawn from a few distinct rows, so scores tie often."""
    k = draw(st.integers(min_classes, max_classes))
    n = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    if all_classes:
        y = np.concatenate([np.arange(k), y])
    weights = rng.integers(1, 10, size=(draw(st.integers(1, 5)), k))    # (m, k) a few rows
    palette = weights / weights.sum(axis=1, keepdims=True)
    probs = palette[rng.integers(0, len(palette), y.size)]
    return y, probs


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@FAST
@given(predictions())
def test_accuracy_f1_confusion_equal_sklearn(data):
    y, probs = data
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    assert accuracy(y, pred) == pytest.approx(sk.accuracy_score(y, pred))
    assert macro_f1(y, pred, k) == pytest.approx(quiet(sk.f1_score, y, pred, average="macro"))
    np.testing.assert_array_equal(confusion_matrix(y, pred, k),
                                  sk.confusion_matrix(y, pred, labels=np.arange(k)))


@FAST
@given(predictions())
def test_per_class_equal_sklearn(data):
    y, probs = data
    k = probs.shape[1]
    names = [f"c{i}" for i in range(k)]
    report = evaluate(y, probs, names)
    p, r, f, s = quiet(sk.precision_recall_fscore_support, y, probs.argmax(axis=1),
                       labels=np.arange(k))
    for i, name in enumerate(names):
        got = report["per_class"][name]
        assert got["precision"] == pytest.approx(p[i])
        assert got["recall"] == pytest.approx(r[i])
        assert got["f1"] == pytest.approx(f[i])
        assert got["support"] == s[i]


@FAST
@given(st.integers(0, 2**32 - 1), st.integers(2, 80), st.sampled_from([3, 5, 1000]))
def test_binary_auc_equal_sklearn_with_ties(seed, n, levels):
    rng = np.random.default_rng(seed)
    y = np.concatenate([[0, 1], rng.integers(0, 2, n)])
    score = rng.integers(0, levels, y.size) / (levels - 1)       # few levels: many ties
    probs = np.stack([1 - score, score], axis=1)
    expected = sk.roc_auc_score(y, score)
    assert roc_auc(y, probs) == pytest.approx(expected, abs=1e-12)
    assert roc_auc(y, score) == pytest.approx(expected, abs=1e-12)
    assert evaluate(y, probs, ["neg", "pos"])["auc"] == pytest.approx(expected, abs=1e-12)


@FAST
@given(predictions(min_classes=3, all_classes=True))
def test_multiclass_auc_equal_sklearn_ovr_macro(data):
    y, probs = data
    expected = sk.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert roc_auc(y, probs) == pytest.approx(expected, abs=1e-12)


def test_multiclass_auc_with_an_absent_class_averages_the_present_ones():
    rng = np.random.default_rng(0)
    y = rng.choice([0, 2, 3], 40)                     # class 1 never occurs
    probs = rng.dirichlet(np.ones(4), 40)
    expected = np.mean([sk.roc_auc_score(y == c, probs[:, c]) for c in (0, 2, 3)])
    assert roc_auc(y, probs) == pytest.approx(expected)


def test_auc_none_for_a_single_class():
    probs = np.array([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert roc_auc([1, 1, 1], probs) is None
    report = evaluate([1, 1, 1], probs, ["a", "b"])
    assert report["auc"] is None and report["accuracy"] == pytest.approx(2 / 3)
    assert roc_auc([2, 2], np.full((2, 3), 1 / 3)) is None
    json.dumps(report)


def test_evaluate_report_shape_and_values():
    y = np.array([0, 0, 1, 2, 2, 2])
    probs = np.array([[.7, .2, .1], [.1, .8, .1], [.2, .5, .3], [.1, .1, .8], [.6, .2, .2],
                      [.2, .2, .6]])
    report = evaluate(y, probs, ["neg", "neu", "pos"])
    json.dumps(report)  # plain python types
    assert set(report) >= {"accuracy", "macro_f1", "auc", "n", "labels", "per_class",
                           "confusion_matrix"}
    assert report["n"] == 6 and report["labels"] == ["neg", "neu", "pos"]
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["per_class"]["pos"] == {"precision": 1.0, "recall": pytest.approx(2 / 3),
                                          "f1": pytest.approx(0.8), "support": 3}
    with pytest.raises(ValueError):
        evaluate(y, probs[:, :2], ["neg", "neu"])


def test_format_report_shows_the_numbers():
    y = np.array([0, 1, 1, 0, 1])
    probs = np.array([[.9, .1], [.3, .7], [.6, .4], [.4, .6], [.2, .8]])
    report = evaluate(y, probs, ["negative", "positive"])
    text = format_report(report)
    for name in ("negative", "positive", "macro avg", "weighted avg", "confusion matrix"):
        assert name in text
    assert f"{report['accuracy']:.4f}" in text and f"{report['macro_f1']:.4f}" in text
    assert f"{report['auc']:.4f}" in text
    matrix_rows = [line.split() for line in text.splitlines()
                   if line.split()[:1] in (["negative"], ["positive"]) and len(line.split()) == 3]
    assert [list(map(int, row[1:])) for row in matrix_rows] == report["confusion_matrix"]
    none_auc = format_report(evaluate([1, 1], probs[:2], ["negative", "positive"]))
    assert "n/a" in none_auc


def test_plot_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    names = ["finance", "realty", "体育", "entertainment"]
    report = evaluate(rng.integers(0, 4, 50), rng.dirichlet(np.ones(4), 50), names)
    out = tmp_path / "cm.png"
    note = plot_confusion_matrix(report, out, title="test")
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    # without a CJK font "体育" cannot be drawn: the axes number the labels and the note maps them
    cjk_font = not _unrenderable(["体育"], _font_families())
    assert (note is None) == cjk_font
    if not cjk_font:
        assert note == (f"{out}: no installed font draws 体育; the axes number the labels in id order: "
                        "0 = finance, 1 = realty, 2 = 体育, 3 = entertainment")


def png_size(path) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.parametrize("k", [3, 150, 1100])
def test_a_confusion_plot_stays_a_readable_size_for_many_classes(tmp_path, monkeypatch, k):
    """The figure grew 0.6 inch a class with a count in every cell: 150 classes took 2.9 GB, and
    1,100 failed to allocate its 66,000-pixel canvas after the evaluation had finished."""
    from matplotlib.axes import Axes

    rng = np.random.default_rng(0)
    names = [f"intent_{i}" for i in range(k)]
    report = evaluate(rng.integers(0, k, 3 * k), rng.dirichlet(np.ones(k), 3 * k), names)
    out = tmp_path / "cm.png"
    texts, real_text = [], Axes.text
    monkeypatch.setattr(Axes, "text", lambda self, *a, **kw: texts.append(a) or real_text(self, *a, **kw))
    assert plot_confusion_matrix(report, out) is None
    assert len(texts) == (k * k if k <= 40 else 0)        # a count in each cell while they fit
    width, height = png_size(out)
    assert max(width, height) <= 3000 and min(width, height) >= 400
    if k == 3:
        assert width == height == 430                      # 0.6 inch a class + 2.5, at 100 dpi, as before


def test_label_names_in_tables_are_escaped_and_cut():
    """A label with a newline (a quoted CSV field) broke every table row; a 5,000-character one
    padded them all to 5,043 columns."""
    names = ["line\nbreak", "x" * 5000, "ok"]
    rng = np.random.default_rng(0)
    text = format_report(evaluate(rng.integers(0, 3, 30), rng.dirichlet(np.ones(3), 30), names))
    assert "line\\nbreak" in text and "x" * 37 + "..." in text and "x" * 41 not in text
    assert max(len(line) for line in text.splitlines()) < 120


def test_format_report_prints_the_matrix_for_up_to_twenty_classes():
    rng = np.random.default_rng(0)
    for k in (20, 21):
        names = [f"c{i}" for i in range(k)]
        text = format_report(evaluate(rng.integers(0, k, 200), rng.dirichlet(np.ones(k), 200), names))
        printed = "confusion matrix (rows: true, columns: predicted)" in text
        assert printed == (k == 20)
        assert (f"confusion matrix: not printed for more than 20 classes ({k}); the JSON report holds it "
                "(confusion_matrix)" in text) == (k == 21)
        assert text.count("\n") < 3 * k + 20 and "macro-F1" in text


def test_unrenderable_characters_are_found_per_font():
    assert _unrenderable(["finance", "café"], ["DejaVu Sans"]) == []
    assert _unrenderable(["体育 新闻"], ["DejaVu Sans"]) == sorted("体育新闻")       # DejaVu has no CJK
    assert _unrenderable(["x"], ["No Such Font Family"]) == ["x"]
