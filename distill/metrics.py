"""Classification metrics in numpy, equal to scikit-learn's (which is only a test dependency).

y_true, y_pred: int arrays (n,) of class ids; probs: float array (n, k), rows summing to 1.
Zero divisions give 0.0, as scikit-learn's default does.
"""
from __future__ import annotations

import warnings

import numpy as np


def accuracy(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        raise ValueError("accuracy of zero rows is undefined")
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts; rows = true class, columns = predicted class."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(num.shape, dtype=np.float64), where=den > 0)


def per_class_scores(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """precision, recall, f1, support per class from a confusion matrix, each (k,)."""
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision, recall = _safe_div(tp, predicted), _safe_div(tp, support)
    f1 = _safe_div(2 * tp, predicted + support)   # = 2PR/(P+R), and 0 where that is 0/0
    return precision, recall, f1, support


def _present(cm: np.ndarray) -> np.ndarray:
    """Classes occurring in y_true or y_pred: the ones scikit-learn's macro averages cover."""
    return (cm.sum(axis=0) + cm.sum(axis=1)) > 0


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    """Unweighted mean F1 over the classes present in y_true or y_pred (sklearn's default)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    _, _, f1, _ = per_class_scores(cm)
    present = _present(cm)
    return float(f1[present].mean()) if present.any() else 0.0


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, ties sharing their average rank (scipy.stats.rankdata 'average')."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)                      # rank of the last member of each tie group
    return ((last - counts + 1 + last) / 2.0)[inverse.reshape(-1)]


def _binary_auc(is_positive: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC as the Mann-Whitney U statistic: equals the trapezoidal ROC area, ties included."""
    n_pos = int(is_positive.sum())
    n_neg = is_positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    u = ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_auc(y_true, probs) -> float | None:
    """Binary (probs (n,) or (n, 2)): AUC of the class-1 score. Several classes: macro average of
    one-vs-rest AUCs over the classes that occur in y_true. None when undefined (y_true holds a
    single class)."""
    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 1:
        return _binary_auc(y == 1, probs)
    if probs.shape[1] == 2:
        return _binary_auc(y == 1, probs[:, 1])
    aucs = [_binary_auc(y == c, probs[:, c]) for c in range(probs.shape[1])]
    aucs = [a for a in aucs if a is not None]
    return float(np.mean(aucs)) if aucs else None


def evaluate(y_true, probs, label_names) -> dict:
    """The evaluation report (JSON-serialisable): accuracy, macro_f1, auc, n, labels,
    per_class {name: {precision, recall, f1, support}}, confusion_matrix (rows true, cols pred)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    labels = [str(name) for name in label_names]
    k = len(labels)
    if probs.ndim != 2 or probs.shape != (len(y_true), k):
        raise ValueError(f"probs must be ({len(y_true)}, {k}), got {probs.shape}")
    if y_true.size and (y_true.min() < 0 or y_true.max() >= k):
        raise ValueError(f"label ids must lie in 0..{k - 1}")
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, k)
    precision, recall, f1, support = per_class_scores(cm)
    present = _present(cm)
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "auc": roc_auc(y_true, probs),
        "n": int(y_true.size),
        "labels": labels,
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                             "f1": float(f1[i]), "support": int(support[i])}
                      for i, name in enumerate(labels)},
        "confusion_matrix": cm.tolist(),
    }


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def label_for_table(name: str, limit: int = 40) -> str:
    """A label name as a table shows it: control characters escaped (a newline inside a quoted CSV
    field broke every row), cut at `limit` characters (a 5,000-character label padded each row)."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def format_report(report: dict) -> str:
    """A classification_report-style table, then the confusion matrix and the headline metrics."""
    per_class = report["per_class"]
    names = report["labels"]
    labels = [label_for_table(name) for name in names]
    cm = np.asarray(report["confusion_matrix"], dtype=np.int64)
    present = _present(cm) if cm.size else np.ones(len(labels), bool)
    width = max([len(name) for name in labels] + [len("weighted avg")])
    head = f"{'':>{width}}  {'precision':>9}  {'recall':>9}  {'f1-score':>9}  {'support':>8}"
    rows = [head, ""]
    for name, shown in zip(names, labels):
        s = per_class[name]
        rows.append(f"{shown:>{width}}  {s['precision']:>9.4f}  {s['recall']:>9.4f}  "
                    f"{s['f1']:>9.4f}  {s['support']:>8d}")
    n = report["n"]
    scores = np.array([[per_class[name][m] for m in ("precision", "recall", "f1")] for name in names])
    support = np.array([per_class[name]["support"] for name in names], dtype=np.float64)
    macro = scores[present].mean(axis=0) if present.any() else np.zeros(3)
    weighted = (scores * support[:, None]).sum(axis=0) / n if n else np.zeros(3)
    rows += ["", f"{'accuracy':>{width}}  {'':>9}  {'':>9}  {report['accuracy']:>9.4f}  {n:>8d}"]
    for title, avg in (("macro avg", macro), ("weighted avg", weighted)):
        rows.append(f"{title:>{width}}  {avg[0]:>9.4f}  {avg[1]:>9.4f}  {avg[2]:>9.4f}  {n:>8d}")

    if len(labels) > MATRIX_TEXT_CLASSES:      # k x k cells: 2,000 classes made 48 MB of text
        rows += ["", f"confusion matrix: not printed for more than {MATRIX_TEXT_CLASSES} classes "
                     f"({len(labels):,}); the JSON report holds it (confusion_matrix)"]
        return "\n".join(rows + _headline(report, labels, n))
    # confusion matrix: names as column heads when short, else class indices
    short = max(len(name) for name in labels) <= 10
    heads = labels if short else [str(i) for i in range(len(labels))]
    cell = max([len(h) for h in heads] + [len(str(int(cm.max()))) if cm.size else 1])
    row_names = labels if short else [f"{i} {name}" for i, name in enumerate(labels)]
    corner = "true \\ predicted"
    rw = max(len(r) for r in row_names + [corner])
    rows += ["", "confusion matrix (rows: true, columns: predicted)",
             f"{corner:<{rw}}  " + "  ".join(f"{h:>{cell}}" for h in heads)]
    for name, counts in zip(row_names, cm.tolist()):
        rows.append(f"{name:<{rw}}  " + "  ".join(f"{c:>{cell}d}" for c in counts))
    return "\n".join(rows + _headline(report, labels, n))


def _headline(report: dict, labels, n: int) -> list[str]:
    return ["", f"accuracy  {_fmt(report['accuracy'])}",
            f"macro-F1  {_fmt(report['macro_f1'])}",
            f"ROC-AUC   {_fmt(report['auc'])}" + ("  (one-vs-rest, macro)" if len(labels) > 2 and
                                                   report["auc"] is not None else ""),
            f"rows      {n}"]


_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "WenQuanYi Zen Hei",
              "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei", "PingFang SC", "Source Han Sans SC")


def _font_families() -> list[str]:
    """DejaVu Sans, then any installed CJK font (matplotlib >= 3.6 falls back glyph by glyph),
    so Chinese label names render where such a font exists."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ["DejaVu Sans"] + [name for name in _CJK_FONTS if name in installed]


def _unrenderable(labels, families) -> list[str]:
    """The characters of `labels` that none of the font families has a glyph for."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    fonts = []
    for family in families:
        try:
            fonts.append(FT2Font(font_manager.findfont(font_manager.FontProperties(family=family),
                                                       fallback_to_default=False)))
        except ValueError:   # not installed
            continue
    chars = sorted({c for label in labels for c in label if not c.isspace()})
    return [c for c in chars if not any(font.get_char_index(ord(c)) for font in fonts)]


MATRIX_TEXT_CLASSES = 20      # format_report prints the k x k matrix up to this many classes
PLOT_COUNTED_CLASSES = 40     # the plot writes each cell's count up to this many
PLOT_NAMED_CLASSES = 100      # and names the classes on its axes up to this many
PLOT_MAX_INCHES = 30.0        # at 100 dpi: at most 3,000 pixels a side


def plot_confusion_matrix(report: dict, path, title=None) -> str | None:
    """Write the confusion matrix as a PNG: counts in the cells, label names on the axes. Where
    no installed font can draw a label name (Chinese labels on a machine without a CJK font),
    the axes number the labels in id order instead, and the returned note says so."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg

    labels = report["labels"]
    k = len(labels)
    named = k <= PLOT_NAMED_CLASSES
    families = _font_families()
    missing = _unrenderable(labels, families) if named else []
    note = None
    if missing:
        listing = ", ".join(f"{i} = {name}" for i, name in enumerate(labels))
        note = (f"{path}: no installed font draws {''.join(missing[:10])}{'...' if len(missing) > 10 else ''}; "
                f"the axes number the labels in id order: {listing}")
        labels = [str(i) for i in range(k)]
    cm = np.asarray(report["confusion_matrix"], dtype=np.int64)  # (k, k) rows true, cols predicted
    # the figure grows with k up to PLOT_MAX_INCHES (a 1,100-class canvas of 66k pixels a side
    # failed to allocate); cell counts only while they fit, names only while they can be read
    side = min(max(4.0, 0.6 * k + 2.5), PLOT_MAX_INCHES)
    with warnings.catch_warnings(), rc_context({"font.family": families}):
        warnings.simplefilter("ignore", UserWarning)  # the title may hold such glyphs too
        fig = Figure(figsize=(side, side), dpi=100)
        ax = fig.add_subplot()
        image = ax.imshow(cm, cmap="Blues", vmin=0, interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        threshold = cm.max() / 2.0 if cm.size else 0
        for i, j in np.ndindex(*cm.shape) if k <= PLOT_COUNTED_CLASSES else ():
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > threshold else "black", fontsize=9)
        if named:
            ax.set_xticks(range(k), labels, rotation=45, ha="right", rotation_mode="anchor")
            ax.set_yticks(range(k), labels)
        ax.set_xlabel("predicted" if named else f"predicted (label ids 0..{k - 1})")
        ax.set_ylabel("true" if named else f"true (label ids 0..{k - 1})")
        ax.set_title(title or f"Confusion matrix (accuracy {report['accuracy']:.3f}, "
                              f"n={report['n']})")
        fig.tight_layout()
        fig.savefig(path, format="png")
    return note
