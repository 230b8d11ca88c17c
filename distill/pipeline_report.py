"""The pipeline's report card: every artifact evaluated on the eval file through the engine it
runs on, timed on ONE thread in this one process, side by side; report.json and report.md.

Rows (name, output directory, engine):
    teacher                 teacher/        torch (fp32, batches of 32)
    teacher                 teacher/        torch, batches in input order (the user's path)
    student                 student/        torch
    student fp32 ONNX       student-fp32/   onnxruntime, and the numpy runtime
    student int8 ONNX       student-int8/   onnxruntime, and the numpy runtime
    TF-IDF + linear SVM     baseline/       scikit-learn

Throughput is sentences/s from raw text to logits (tokenizing included, loading excluded) over
all eval texts, after one untimed warm-up pass over them (torch builds its kernels per batch
shape: warmed up on one batch, the first engine timed paid for the others' shapes and seemed up
to 1.7x slower than it is); every engine uses batches of `batch_size`
texts sorted by length (the numpy runtime's Classifier does that itself, and torch and
onnxruntime get the same favour, so the comparison does not flatter the student). One more
teacher row runs torch the way a plain Hugging Face loop does, consecutive batches in input
order; "vs user path" is every row's speed against that one.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

USER_PATH = "torch-input-order"     # the teacher in torch, consecutive batches in input order
TORCH_ENGINES = ("torch", USER_PATH)
ROWS = (("teacher", "teacher", "torch"),
        ("teacher", "teacher", USER_PATH),
        ("student", "student", "torch"),
        ("student fp32 ONNX", "student-fp32", "onnxruntime"),
        ("student fp32 ONNX", "student-fp32", "numpy"),
        ("student int8 ONNX", "student-int8", "onnxruntime"),
        ("student int8 ONNX", "student-int8", "numpy"),
        ("TF-IDF + linear SVM", "baseline", "scikit-learn"))
ENGINE_NAMES = {"torch": "torch", USER_PATH: "torch, input order", "onnxruntime": "onnxruntime",
                "numpy": "numpy runtime", "scikit-learn": "scikit-learn"}


def row_key(artifact: str, engine: str) -> str:
    return f"{artifact}/{engine}"


# ---------------------------------------------------------------- one thread

@contextlib.contextmanager
def one_thread():
    """torch, BLAS and OpenMP pools limited to one thread inside the block."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- engines: texts -> logits

def torch_predictor(model_dir, batch_size: int, sort: bool = True):
    from .predict import default_max_length, load_model_dir, predict_logits

    model, tokenizer, _ = load_model_dir(model_dir)
    length = default_max_length(model_dir, tokenizer)
    return lambda texts: predict_logits(model, tokenizer, texts, length, batch_size, sort=sort)


def onnxruntime_predictor(bundle, batch_size: int):
    """model.onnx in onnxruntime (one intra-op thread) with the bundle's Hugging Face tokenizer,
    loaded once (export.engines.onnxruntime_logits does the same per call, loading included)."""
    import onnxruntime as ort

    from export.engines import read_runtime_json

    from .predict import length_sorted_batches
    from .tokenization import load_tokenizer

    config = read_runtime_json(bundle)
    tokenizer = load_tokenizer(bundle)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(Path(bundle) / "model.onnx"), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def predict(texts):
        enc = tokenizer(list(texts), truncation=True, max_length=int(config["max_length"]))
        rows = [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]
        out = np.zeros((len(texts), len(config["labels"])), dtype=np.float32)
        for idx in length_sorted_batches([len(r["input_ids"]) for r in rows], batch_size):
            batch = tokenizer.pad([rows[i] for i in idx], return_tensors="np")
            feeds = {n: np.asarray(batch[n], dtype=np.int64) if n in batch
                     else np.zeros_like(batch["input_ids"], dtype=np.int64) for n in names}
            out[idx] = session.run([config["output"]], feeds)[0]
        return out

    return predict


def numpy_predictor(bundle, batch_size: int):
    from runtime import Classifier

    return Classifier.load(bundle, batch_size=batch_size).logits


def baseline_predictor(directory, n_labels: int):
    from .pipeline_baseline import baseline_logits, load_baseline

    model = load_baseline(directory)
    return lambda texts: baseline_logits(model, texts, n_labels)


def load_predictor(path, engine: str, batch_size: int, n_labels: int):
    if engine in TORCH_ENGINES:
        return torch_predictor(path, batch_size, sort=engine != USER_PATH)
    if engine == "onnxruntime":
        return onnxruntime_predictor(path, batch_size)
    if engine == "numpy":
        return numpy_predictor(path, batch_size)
    return baseline_predictor(path, n_labels)


def timed_passes(predictors: dict, texts: list[str], rounds: int, log) -> dict:
    """{key: (logits of the first timed pass, [sentences/s of each round])} after one untimed pass
    of every engine over all texts; rounds interleave the engines."""
    results: dict = {}
    for key, predict in predictors.items():
        predict(texts)
    for r in range(rounds):
        for key, predict in predictors.items():
            start = time.perf_counter()
            logits = predict(texts)
            speed = len(texts) / (time.perf_counter() - start)
            results.setdefault(key, (logits, []))[1].append(speed)
            log(f"  {key}: {speed:,.1f} sentences/s" + (f" (round {r + 1})" if rounds > 1 else ""))
    return results


# ---------------------------------------------------------------- stage reports

def _read_json(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def stage_scores(out: Path, artifact: str, engine: str) -> dict | None:
    """The accuracy and macro-F1 the producing stage reported for this artifact and engine."""
    def pick(report):
        return None if not report else {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}

    if artifact in ("teacher", "student") and engine in TORCH_ENGINES:
        return pick(_read_json(out / artifact / "training.json").get("final_eval"))
    if artifact == "baseline":
        return pick(_read_json(out / artifact / "baseline.json")["final_eval"])
    if engine == "onnxruntime":
        accuracy = _read_json(out / artifact / "export.json").get("accuracy") or {}
        return pick(accuracy.get("onnx_int8" if artifact.endswith("int8") else "onnx_fp32"))
    return None


def parameters_of(out: Path, artifact: str) -> int:
    if artifact == "baseline":
        return int(_read_json(out / "baseline" / "baseline.json")["parameters"])
    source = "teacher" if artifact == "teacher" else "student"
    return int(_read_json(out / source / "training.json")["parameters"])


MODEL_FILES = {"teacher": "model.safetensors", "student": "model.safetensors", "baseline": "model.pkl"}


def sizes_of(path: Path, artifact: str) -> tuple[int, int]:
    """(every file of the directory, the weights file alone) in bytes."""
    from .savedir import dir_size_bytes

    model_file = path / MODEL_FILES.get(artifact, "model.onnx")
    return dir_size_bytes(path), model_file.stat().st_size if model_file.is_file() else 0


# ---------------------------------------------------------------- the report

def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch
        gpu = torch.cuda.is_available()
    except ImportError:
        gpu = False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "gpu": gpu, "platform": platform.platform(),
            "python": platform.python_version()}


def build_report(settings, out: Path, stages: dict, log) -> dict:
    """Evaluate every artifact (one thread, one process), write report.json, report.md, plots."""
    from .data import load_labelled
    from .evaluation import model_labels
    from .metrics import evaluate
    from .pipeline_config import describe
    from .predict import softmax
    from .savedir import library_versions, write_json

    options = settings.report_settings()
    labels = model_labels(out / "teacher")
    data = load_labelled(settings.eval, settings.data, labels=labels)
    texts, y = data.texts, np.asarray(data.labels)
    rows_wanted = enabled_rows(settings)
    batch = int(options["batch_size"])
    with one_thread():
        predictors = {row_key(a, e): load_predictor(out / a, e, batch, len(labels)) for _, a, e in rows_wanted}
        log(f"  timing {len(predictors)} engines on {len(texts)} eval texts, one thread, batches of {batch}")
        results = timed_passes(predictors, texts, int(options["rounds"]), log)

    rows = []
    for name, artifact, engine in rows_wanted:
        logits, speeds = results[row_key(artifact, engine)]
        scores = evaluate(y, softmax(logits), labels)
        size, model_bytes = sizes_of(out / artifact, artifact)
        rows.append({"name": name, "artifact": artifact, "engine": engine, "path": str(out / artifact),
                     "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "auc": scores["auc"],
                     "parameters": parameters_of(out, artifact), "size_bytes": size,
                     "model_file_bytes": model_bytes, "samples_per_second": max(speeds),
                     "samples_per_second_rounds": speeds,
                     "stage_report": stage_scores(out, artifact, engine), "eval": scores,
                     "predictions": logits.argmax(axis=1)})
    add_ratios(rows)
    report = {"format": 1, "command": "pipeline",
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
              "eval": {"path": str(settings.eval), "sha256": data.sha256, "rows": len(data), "skipped": data.skipped},
              "threads": 1, "batch_size": batch, "rounds": int(options["rounds"]), "labels": labels,
              "rows": rows, "agreement": agreements(rows), "stages": stages,
              "settings": describe(settings), "versions": library_versions()}
    report["rows"] = [{k: v for k, v in row.items() if k != "predictions"} for row in rows]
    report["plots"] = report_plots(report, out, options["plots"], log)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    return report


def enabled_rows(settings) -> list[tuple]:
    """The rows of the stages this run enabled, not of every directory OUT holds: a baseline/
    left by an earlier run may have learnt from other data and labels."""
    baseline = settings.baseline_settings()["enabled"]
    return [row for row in ROWS if row[1] != "baseline" or baseline]


def report_plots(report: dict, out: Path, wanted: bool, log) -> list[str]:
    """The plots written (paths relative to OUT); with plots off, OUT/plots from an earlier run is
    removed (OUT is the pipeline's own output), so no stale figure sits beside this report."""
    import shutil

    plots_dir = out / "plots"
    if not wanted:
        shutil.rmtree(plots_dir, ignore_errors=True)
        return []
    from .pipeline_plots import write_plots

    return [str(p.relative_to(out)) for p in write_plots(report, out, plots_dir, log)]


def add_ratios(rows: list[dict]) -> None:
    """retention (accuracy / teacher's), smaller (teacher dir size / size), faster (sentences/s
    / teacher's, both length-sorted) against the teacher row; faster than the user's path
    (sentences/s / the teacher's in input order) against the teacher's input-order row."""
    teacher = next((r for r in rows if r["artifact"] == "teacher" and r["engine"] == "torch"), None)
    user = next((r for r in rows if r["artifact"] == "teacher" and r["engine"] == USER_PATH), None)
    for row in rows:
        row["retention"] = row["accuracy"] / teacher["accuracy"] if teacher and teacher["accuracy"] else None
        row["smaller_than_teacher"] = teacher["size_bytes"] / row["size_bytes"] if teacher and row["size_bytes"] else None
        row["faster_than_teacher"] = row["samples_per_second"] / teacher["samples_per_second"] if teacher else None
        row["faster_than_user_path"] = row["samples_per_second"] / user["samples_per_second"] if user else None


def agreements(rows: list[dict]) -> dict:
    """Label agreement of the numpy runtime with onnxruntime on each bundle."""
    by_key = {row_key(r["artifact"], r["engine"]): r for r in rows}
    found = {}
    for artifact in ("student-fp32", "student-int8"):
        a, b = by_key.get(row_key(artifact, "numpy")), by_key.get(row_key(artifact, "onnxruntime"))
        if a and b:
            found[f"{artifact}: numpy runtime vs onnxruntime"] = float(np.mean(a["predictions"] == b["predictions"]))
    return found


# ---------------------------------------------------------------- text

def _mb(n) -> str:
    return f"{n / 1e6:.2f}" if n < 1e7 else f"{n / 1e6:.1f}"


def _x(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table_rows(report: dict) -> list[list[str]]:
    head = ["artifact", "engine", "accuracy", "macro-F1", "parameters", "size MB", "sentences/s",
            "retention", "smaller", "faster", "vs user path"]
    lines = [head]
    for r in report["rows"]:
        lines.append([r["name"], ENGINE_NAMES[r["engine"]], f"{100 * r['accuracy']:.2f}%", f"{r['macro_f1']:.4f}",
                      f"{r['parameters']:,}", _mb(r["size_bytes"]), f"{r['samples_per_second']:,.1f}",
                      "-" if r["retention"] is None else f"{100 * r['retention']:.1f}%",
                      _x(r["smaller_than_teacher"]), _x(r["faster_than_teacher"]),
                      _x(r.get("faster_than_user_path"))])   # absent from reports made before that row
    return lines


def format_table(report: dict) -> str:
    """A plain-text table for the terminal."""
    lines = table_rows(report)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
            for line in lines]
    return "\n".join([text[0], "-" * len(text[0]), *text[1:]])


def markdown_table(report: dict) -> str:
    lines = table_rows(report)
    out = ["| " + " | ".join(lines[0]) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(lines[0]) - 2)) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines[1:]]
    return "\n".join(out)


def eval_skipped(report: dict) -> str:
    """'skipped 1 row: 1 empty text' for the eval rows --skip-bad-rows left out, or ''."""
    from .data import describe_skipped

    return describe_skipped(report["eval"].get("skipped") or {})


def training_rows(teach: dict) -> str | None:
    """Which labelled rows the teacher learnt from, when not all of the training file."""
    parts = []
    if teach.get("max_train_samples") is not None:
        parts.append(f"a subset of {teach['max_train_samples']}")
    if teach.get("few_shot"):
        shots = teach.get("shots")
        parts.append(f"few-shot {teach['few_shot']} teacher, " + ("none (zero-shot)" if shots == 0 else
                     "every row" if shots is None else f"{shots} per class"))
    return f"{', '.join(parts)} (seed {teach['seed']})" if parts else None


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    skipped = eval_skipped(report)
    parts = [
        "# distill pipeline report", "",
        f"- train: `{s['train']}`; eval: `{report['eval']['path']}` ({report['eval']['rows']} rows"
        + (f"; {skipped}" if skipped else "") + ")",
        f"- date: {report['date']}; machine: {m['cpu']}, {m['cores']} CPU cores available, "
        f"{'a GPU present (not used)' if m['gpu'] else 'no GPU'}; {m['platform']}",
        f"- every row measured in one process on one thread, batches of {report['batch_size']} texts "
        f"sorted by length (except the teacher's input-order row), raw text to logits (tokenizing "
        f"included, loading excluded), best of {report['rounds']} pass(es) over all eval texts",
        "- retention: accuracy / the teacher's; smaller: the teacher directory's size on disk / this "
        "artifact's directory; faster: sentences/s / the teacher's (torch, fp32, same sorted batches); "
        "vs user path: sentences/s / the teacher's in torch with consecutive batches in input order "
        "(what a plain Hugging Face loop does)", "",
        markdown_table(report), ""]
    rows = training_rows(s["teach"])
    if rows:
        parts.insert(3, f"- labelled training rows: {rows}; the student and the baseline learn from the same rows")
    if report["agreement"]:
        parts += ["Label agreement: " + "; ".join(f"{k} {100 * v:.2f}%" for k, v in report["agreement"].items()), ""]
    checks = [(r, r["stage_report"]) for r in report["rows"] if r["stage_report"]]
    if checks:
        parts += ["## Against the stage reports", "",
                  "| artifact | engine | accuracy here | stage report |", "|---|---|---:|---:|"]
        parts += [f"| {r['name']} | {ENGINE_NAMES[r['engine']]} | {100 * r['accuracy']:.2f}% | "
                  f"{100 * st['accuracy']:.2f}% |" for r, st in checks]
        parts.append("")
    parts += ["## Stages", "", "| stage | status | seconds |", "|---|---|---:|"]
    parts += [f"| {name} | {info['status']} | {info.get('seconds') or 0:.0f} |" for name, info in report["stages"].items()]
    if report["plots"]:
        parts += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in report["plots"]]
    return "\n".join(parts) + "\n"
