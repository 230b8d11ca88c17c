"""The report card's PNG plots (matplotlib Figure objects rendered with Agg; no pyplot state):

    accuracy_vs_size.png        one point per artifact, size on disk (log scale)
    accuracy_vs_throughput.png  one point per artifact and engine, sentences/s on one thread (log)
    training_curves.png         training loss (logged every few steps), eval loss and accuracy per epoch
    confusion_int8.png          the int8 student's confusion matrix (numpy runtime)
"""
from __future__ import annotations

import json
from pathlib import Path

from .pipeline_report import ENGINE_NAMES, USER_PATH

COLOURS = {"teacher": "tab:blue", "student": "tab:orange", "student-fp32": "tab:green",
           "student-int8": "tab:red", "baseline": "tab:gray"}
MARKERS = {"torch": "o", USER_PATH: "P", "onnxruntime": "s", "numpy": "D", "scikit-learn": "^"}


def _figure(width=6.4, height=4.4):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _label(row: dict, with_engine: bool) -> str:
    return f"{row['name']} ({ENGINE_NAMES[row['engine']]})" if with_engine else row["name"]


def _scatter(rows, x_key: str, x_label: str, title: str, path: Path, scale: float = 1.0, with_engine=True):
    fig = _figure()
    ax = fig.add_subplot()
    for row in rows:
        colour = COLOURS.get(row["artifact"], "black")
        hollow = row["artifact"] == "student" and row["engine"] == "torch"   # a ring: it often sits on fp32 ONNX
        ax.scatter(row[x_key] * scale, 100 * row["accuracy"], s=150 if hollow else 60,
                   facecolors="none" if hollow else colour, edgecolors=colour, linewidths=2 if hollow else 1,
                   marker=MARKERS.get(row["engine"], "o"), label=_label(row, with_engine), zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("accuracy on the eval file (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    low = min(100 * r["accuracy"] for r in rows)
    ax.set_ylim(max(0.0, low - 5), min(100.0, max(100 * r["accuracy"] for r in rows) + 3))
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def plot_accuracy_vs_size(report: dict, path: Path) -> Path:
    """One point per artifact: a bundle's row is the numpy runtime's (what ships)."""
    rows = [r for r in report["rows"] if r["engine"] not in ("onnxruntime", USER_PATH)]
    return _scatter(rows, "size_bytes", "size on disk (MB, log scale)", "Accuracy against size", path,
                    scale=1e-6, with_engine=False)


def plot_accuracy_vs_throughput(report: dict, path: Path) -> Path:
    return _scatter(report["rows"], "samples_per_second", "CPU throughput, one thread (sentences/s, log scale)",
                    "Accuracy against throughput", path)


def training_report(model_dir: Path) -> dict:
    report = Path(model_dir) / "training.json"
    return json.loads(report.read_text(encoding="utf-8")) if report.is_file() else {}


def plot_training_curves(out: Path, path: Path) -> Path:
    """Left: the training loss as logged every few steps (solid; per-epoch means for reports
    without that curve) and the eval loss after each epoch (dashed, markers); right: eval
    accuracy after each epoch. x is the (fractional) epoch, so a one-epoch run still shows how
    its loss fell."""
    fig = _figure(10, 4)
    loss_ax, acc_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    accuracies = []
    for name, colour in (("teacher", COLOURS["teacher"]), ("student", COLOURS["student"])):
        report = training_report(out / name)
        epochs, curve = report.get("epochs", []), report.get("loss_curve", [])
        train_label = f"{name} train loss" + (" (KD + CE)" if name == "student" else " (CE)")
        if curve:
            loss_ax.plot([c["epoch"] for c in curve], [c["loss"] for c in curve], "-", color=colour,
                         label=train_label)
        else:
            points = [(e["epoch"], e["train_loss"]) for e in epochs if e.get("train_loss") is not None]
            if points:
                loss_ax.plot(*zip(*points), "-", marker="o", color=colour, label=train_label)
        points = [(e["epoch"], e["eval_loss"]) for e in epochs if e.get("eval_loss") is not None]
        if points:
            loss_ax.plot(*zip(*points), "--", marker="o", color=colour, label=f"{name} eval loss (CE)")
        points = [(e["epoch"], 100 * e["accuracy"]) for e in epochs if e.get("accuracy") is not None]
        if points:
            acc_ax.plot(*zip(*points), "-", marker="o", color=colour, label=name)
            accuracies += [a for _, a in points]
    if accuracies:   # at least a 2-point window, so one or two epochs do not fill the axis with noise
        low, high = min(accuracies), max(accuracies)
        pad = max(1.0, (2.0 - (high - low)) / 2)
        acc_ax.set_ylim(low - pad, high + pad)
    loss_ax.set_title("Training and eval loss")
    acc_ax.set_title("Eval accuracy after each epoch")
    loss_ax.set_ylabel("loss")
    acc_ax.set_ylabel("accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def write_plots(report: dict, out: Path, plots_dir: Path, log=print) -> list[Path]:
    from .metrics import plot_confusion_matrix

    plots_dir.mkdir(parents=True, exist_ok=True)
    written = [plot_accuracy_vs_size(report, plots_dir / "accuracy_vs_size.png"),
               plot_accuracy_vs_throughput(report, plots_dir / "accuracy_vs_throughput.png"),
               plot_training_curves(out, plots_dir / "training_curves.png")]
    int8 = next((r for r in report["rows"] if r["artifact"] == "student-int8" and r["engine"] == "numpy"), None)
    if int8:
        path = plots_dir / "confusion_int8.png"
        note = plot_confusion_matrix(int8["eval"], path, title=f"int8 student (numpy runtime)\naccuracy "
                                                               f"{int8['accuracy']:.3f}, n={int8['eval']['n']}")
        if note:
            log(f"  note: {note}")
        written.append(path)
    return written
