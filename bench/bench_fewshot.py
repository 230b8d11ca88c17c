"""Few labels, many texts on SST-2: few-shot teachers against the baselines, then a student.

usage: python bench/bench_fewshot.py [--data DIR] [--shots 8,16,64] [--seeds 0,1,2]
                                     [--methods tfidf,embed-lr,teach,prompt-zero,prompt,contrastive,...]
                                     [--student] [--work DIR]

For every (rows per class, seed) the same labelled rows, drawn (seeded) from the SST-2 training
rows of at least --min-words words (the dev set is whole sentences; most training rows are
short phrases), go to every method; each is scored on the full dev set:
  tfidf        TF-IDF (word 1-2 grams) + LinearSVC(C=0.5), as ../shared/bench/reference_tfidf.py
  embed-lr     the frozen teacher's normalised mean-pooled embeddings + logistic regression (C=1)
  teach        plain `distill teach` (fine-tuning, [CLS] pooler) with TEACH_SETTINGS
  prompt-zero  `distill teach --few-shot prompt --shots 0` (label descriptions only; once)
  prompt       `distill teach --few-shot prompt` on the rows
  contrastive  `distill teach --few-shot contrastive` on the rows (pairs capped at MAX_PAIRS)
  prompt-zero-ens, prompt-ens, contrastive-ens
               the same three with `--label-descriptions bench/sst2_label_descriptions.tsv`: six
               descriptions per label (a prompt ensemble; for contrastive, twelve more examples
               in the pairs), written once before any of them was scored, not tuned on dev
With --student: the best few-shot teacher (mean dev accuracy at 16 rows per class) of seed 0 is
distilled by `distill student --layers 3` with 20,000 other training texts as --unlabeled (their
labels unused; STUDENT_EPOCHS), exported by `distill export onnx --int8`, and the int8 bundle is scored with the
numpy runtime (`distill eval --engine numpy`).
Results: one JSON line per run in WORK/runs.jsonl (a rerun skips runs already there), the table
on stdout and in bench/results/fewshot.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LABEL_NAMES = ["negative", "positive"]          # SST-2 ids 0, 1
TEACH_SETTINGS = {"epochs": 20.0, "batch_size": 8, "lr": 5e-5}
MAX_PAIRS = 1280
UNLABELED = 20000
STUDENT_EPOCHS = 1     # one pass over the 20,000 unlabelled texts (and the labelled rows)
METHODS = ("tfidf", "embed-lr", "teach", "prompt-zero", "prompt", "contrastive",
           "prompt-zero-ens", "prompt-ens", "contrastive-ens")
FEW_SHOT = ("prompt", "contrastive", "prompt-ens", "contrastive-ens")    # teachers a student may use
DESCRIPTIONS = ROOT / "bench" / "sst2_label_descriptions.tsv"
ZERO_SHOT = ("prompt-zero", "prompt-zero-ens")


def read_tsv(path) -> tuple[list[str], np.ndarray]:
    from distill.data import DataOptions, load_labelled

    data = load_labelled(path, DataOptions(text_column="sentence"))
    return data.texts, np.asarray([int(data.label_names[i]) for i in data.labels])


def write_rows(path: Path, texts, labels) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.write("label\tsentence\n")
        for text, label in zip(texts, labels):
            f.write(f"{int(label)}\t{text}\n")
    return path


def draw(labels: np.ndarray, pool: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """shots indices per class from the pool, seeded."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(pool[labels[pool] == k], shots, replace=False) for k in (0, 1)]))


def data_options():
    from distill.data import DataOptions

    return DataOptions(text_column="sentence", label_names=str(WORK / "label_names.txt"))


def teach_run(rows_file, dev_file, out, **settings) -> dict:
    """`distill teach` on the rows, then one evaluation of the saved directory on the dev set (no
    per-epoch evaluation: plain fine-tuning would score the dev set after each of its epochs)."""
    from distill.evaluation import evaluate_path
    from distill.teacher import TeachConfig, teach

    report = teach(TeachConfig(train=str(rows_file), out=str(out), force=True, progress=False,
                               data=data_options(), **settings))
    final = evaluate_path(out, dev_file, data_options())
    return {"accuracy": final["accuracy"], "macro_f1": final["macro_f1"],
            "train_seconds": report["train_seconds"], "few_shot": _brief(report.get("few_shot"))}


def _brief(few_shot):
    if not few_shot:
        return None
    keep = ("logit_scale", "logit_scale_source", "leave_one_out_accuracy", "pairs", "head_check", "classifier")
    return {k: few_shot[k] for k in keep if k in few_shot}


def unit_embeddings(encoder, tokenizer, texts) -> np.ndarray:
    """(n, H) normalised mean-pooled embeddings, max length 128: what every head here is fitted on."""
    from distill.fewshot import embed_texts
    from distill.fewshot_head import normalise

    return normalise(embed_texts(encoder, tokenizer, texts, 128))


class Frozen:
    """The frozen default teacher's embeddings of the dev set, computed once."""

    def __init__(self, dev_texts):
        from distill.fewshot import load_encoder
        from distill.teacher import default_teacher_path

        self.encoder, self.tokenizer = load_encoder(default_teacher_path())
        self.embed = lambda texts: unit_embeddings(self.encoder, self.tokenizer, texts)
        self.dev = self.embed(dev_texts)


def run_method(method, shots, seed, rows_file, texts, labels, dev_texts, dev_labels, frozen) -> dict:
    started = time.time()
    out = WORK / f"{method}-{shots}-{seed}"
    if method == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.svm import LinearSVC

        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        clf = LinearSVC(C=0.5, random_state=seed).fit(vec.fit_transform(texts), labels)
        result = {"accuracy": float((clf.predict(vec.transform(dev_texts)) == dev_labels).mean())}
    elif method == "embed-lr":
        from distill.fewshot_contrastive import fit_logistic_regression

        W, b = fit_logistic_regression(frozen().embed(texts), labels, 2)
        result = {"accuracy": float(((frozen().dev @ W.T + b).argmax(1) == dev_labels).mean())}
    elif method == "teach":
        result = teach_run(rows_file, DEV, out, seed=seed, **TEACH_SETTINGS)
    elif method in ZERO_SHOT + FEW_SHOT:
        result = teach_run(rows_file, DEV, out, **few_shot_settings(method, seed, len(texts)))
    else:
        raise SystemExit(f"unknown method {method}")
    result.update({"method": method, "shots": shots, "seed": seed, "seconds": round(time.time() - started, 1)})
    return result


def few_shot_settings(method: str, seed: int, rows: int) -> dict:
    """`distill teach` settings of a prompt or contrastive method (a name from METHODS)."""
    base = method.removesuffix("-ens")
    settings = {"label_descriptions": str(DESCRIPTIONS)} if method.endswith("-ens") else {}
    if base == "prompt-zero":
        return {"few_shot": "prompt", "shots": 0, **settings}
    if base == "contrastive":
        settings["pairs"] = min(40 * rows, MAX_PAIRS)
    return {"few_shot": base, "seed": seed, **settings}


def table(runs: list[dict], shots_list, methods) -> str:
    lines = ["| method | " + " | ".join(f"{s} rows/class" for s in shots_list) + " |",
             "|---|" + "---|" * len(shots_list)]
    for method in methods:
        cells = []
        for shots in shots_list:
            acc = [r["accuracy"] for r in runs if r["method"] == method and r["shots"] == (0 if method in ZERO_SHOT else shots)]
            if not acc:
                cells.append("-")
            elif len(acc) == 1:
                cells.append(f"{100 * acc[0]:.1f}")
            else:
                a = 100 * np.asarray(acc)
                cells.append(f"{a.mean():.1f} ± {a.std(ddof=1):.1f} ({a.min():.1f}-{a.max():.1f})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cli(*args) -> str:
    cmd = [sys.executable, "-m", "distill.cli", *map(str, args)]
    print("$ distill", " ".join(map(str, args)), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def student_run(runs, train_texts, train_labels, drawn: dict) -> dict:
    best = max(FEW_SHOT, key=lambda m: np.mean([r["accuracy"] for r in runs if r["method"] == m and r["shots"] == 16] or [0]))
    teacher_dir = WORK / f"{best}-16-0"
    rows_file = WORK / "rows-16-0.tsv"
    if not (teacher_dir / "training.json").exists():
        teach_run(rows_file, DEV, teacher_dir, **few_shot_settings(best, 0, 32))
    t_acc = next(r["accuracy"] for r in runs if (r["method"], r["shots"], r["seed"]) == (best, 16, 0))
    student, int8 = student_paths(best)
    if (int8.parent / f"{int8.name}.json").exists():   # done by an earlier run of this script
        return student_summary(best, t_acc)
    rng = np.random.default_rng(0)
    others = np.setdiff1d(np.arange(len(train_texts)), drawn[(16, 0)])
    pick = rng.choice(others, UNLABELED, replace=False)
    unlabeled = WORK / "unlabeled-20000.txt"
    unlabeled.write_text("\n".join(train_texts[i] for i in pick) + "\n", encoding="utf-8")
    names = WORK / "label_names.txt"
    common = ["--text-column", "sentence", "--label-names", names]
    started = time.time()
    student_args = ["student", "--teacher", teacher_dir, "--train", rows_file, "--unlabeled", unlabeled,
                    "--eval", DEV, "--layers", 3, "--epochs", STUDENT_EPOCHS, "--out", student, "--force",
                    "--quiet", *common]
    cli(*student_args)      # re-initialises the few-shot teacher's hand-set pooler and classifier
    student_s = time.time() - started
    cli("export", "onnx", student, "--out", int8, "--int8", "--force", "--eval", DEV, *common)
    cli("eval", int8, "--data", DEV, "--engine", "numpy", "--json", int8.parent / f"{int8.name}.json", *common)
    return student_summary(best, t_acc, round(student_s, 1))


def student_paths(teacher_method: str) -> tuple[Path, Path]:
    """(student directory, int8 bundle) distilled from the seed-0 16-row teacher of that method
    (the contrastive one of earlier runs of this script kept the plain names)."""
    name = "student" if teacher_method == "contrastive" else f"student-{teacher_method}"
    return WORK / name, WORK / f"{name}-int8"


def student_head(student: dict) -> str:
    """How the student's pooler and classifier started, from its training.json (a student made
    before distill student recorded it was run in process with the head re-initialised there,
    as its student-how.txt says)."""
    head = student["distillation"].get("head")
    if head:
        return f"distill student: pooler and classifier {head['pooler_classifier']}"
    how = WORK / "student-how.txt"
    return how.read_text().strip() if how.exists() else "-"


def student_summary(best: str, t_acc: float, seconds=None) -> dict:
    student_dir, int8_dir = student_paths(best)
    int8 = json.loads((int8_dir.parent / f"{int8_dir.name}.json").read_text())
    student = json.loads((student_dir / "training.json").read_text())
    fp32 = student["final_eval"]
    how = student_head(student)
    return {"teacher_method": best, "teacher_accuracy": t_acc,
            "teacher_accuracy_in_student_report": student["comparison"]["teacher"]["accuracy"],
            "student_fp32_accuracy": fp32["accuracy"], "student_int8_accuracy": int8["accuracy"],
            "retention_int8": int8["accuracy"] / t_acc, "student_head": how, "unlabeled": UNLABELED,
            "student_epochs": STUDENT_EPOCHS, "student_seconds": seconds}


def main():
    global WORK, DEV
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("DISTILL_DATA_DIR", ROOT.parent / "shared" / "data"))
    parser.add_argument("--shots", default="8,16,64")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--min-words", type=int, default=10, help="labelled rows are drawn from rows this long")
    parser.add_argument("--student", action="store_true")
    parser.add_argument("--work", default="/tmp/bench-fewshot", help="rows files, models, runs.jsonl")
    args = parser.parse_args()
    WORK = Path(args.work)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "label_names.txt").write_text("\n".join(LABEL_NAMES) + "\n")
    DEV = Path(args.data) / "sst2" / "dev.tsv"
    shots_list = [int(s) for s in args.shots.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]

    train_texts, train_labels = read_tsv(Path(args.data) / "sst2" / "train.tsv")
    dev_texts, dev_labels = read_tsv(DEV)
    pool = np.flatnonzero([len(t.split()) >= args.min_words for t in train_texts])
    print(f"SST-2: {len(train_texts)} training rows ({len(pool)} with >= {args.min_words} words), "
          f"{len(dev_texts)} dev rows", flush=True)
    log = WORK / "runs.jsonl"
    runs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {(r["method"], r["shots"], r["seed"]) for r in runs}
    cache = {}

    def frozen():
        if "frozen" not in cache:
            cache["frozen"] = Frozen(dev_texts)
        return cache["frozen"]

    drawn = {}
    for shots in shots_list:
        for seed in seeds:
            idx = draw(train_labels, pool, shots, seed)
            drawn[(shots, seed)] = idx
            texts, labels = [train_texts[i] for i in idx], train_labels[idx]
            rows_file = write_rows(WORK / f"rows-{shots}-{seed}.tsv", texts, labels)
            for method in methods:
                key = (method, 0 if method in ZERO_SHOT else shots, 0 if method in ZERO_SHOT else seed)
                if key in done:
                    continue
                result = run_method(method, key[1], key[2], rows_file, texts, labels, dev_texts, dev_labels, frozen)
                runs.append(result)
                done.add(key)
                with open(log, "a") as f:
                    f.write(json.dumps(result) + "\n")
                print(f"{method:12} {key[1]:3} rows/class seed {key[2]}: dev accuracy {100 * result['accuracy']:.2f}"
                      f"  ({result['seconds']:.0f} s)", flush=True)
                if method not in FEW_SHOT or key[1:] != (16, 0):     # keep the teachers a student may use
                    shutil.rmtree(WORK / f"{method}-{key[1]}-{key[2]}", ignore_errors=True)
    all_shots = sorted({r["shots"] for r in runs if r["method"] not in ZERO_SHOT})
    shown = [m for m in METHODS if any(r["method"] == m for r in runs)]
    summary = {"table": table(runs, all_shots, shown), "runs": runs, "teach_settings": TEACH_SETTINGS,
               "max_pairs": MAX_PAIRS, "min_words": args.min_words}
    if args.student:
        if (16, 0) not in drawn:
            drawn[(16, 0)] = draw(train_labels, pool, 16, 0)
            write_rows(WORK / "rows-16-0.tsv", [train_texts[i] for i in drawn[(16, 0)]], train_labels[drawn[(16, 0)]])
        summary["student"] = student_run(runs, train_texts, train_labels, drawn)
    print("\ndev accuracy (%), mean ± sd (min-max) over seeds " + ",".join(map(str, seeds)))
    print(summary["table"])
    if "student" in summary:
        print("student:", json.dumps(summary["student"]))
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "fewshot.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
