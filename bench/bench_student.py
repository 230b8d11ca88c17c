"""`distill student` on SST-2: the ablation table of issue 3, and the teacher-in-the-loop speed-up.

usage: python bench/bench_student.py [--data DIR] [--teacher models/sst2-teacher] [--runs NAME,...]
                                     [--seeds 0,1,2] [--save RUN:models/sst2-student]
                                     [--speedup-only | --no-speedup]

Every run is `distill student` on the teacher's 16k training subset (--max-train-samples 16000
--seed 0: the rows `distill teach` used), evaluated on SST-2 dev, at a comparable budget of
about 48k training samples each (3 epochs of the 16k labelled rows, or 1 epoch of 16k rows plus
32k transfer texts). Unlabelled transfer texts are other SST-2 training rows, outside the
subset, written without their labels to bench/results/student/unlabeled.txt (32k; all 51k of them
in unlabeled_all.txt for kd_all_unlabeled). The teacher
scores each text once; the runs share its logits through the cache (bench/results/student/cache).
--seeds repeats every run with other training seeds on the same labelled rows (written once to
bench/results/student/labelled-16000.tsv; seed 0 reads them from train.tsv as before); those runs
are named RUN@SEED, and the table ends with each run's mean and standard deviation over seeds.
Results: a table on stdout and bench/results/student/ablation.json (speedup.json for the
teacher-in-the-loop comparison).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "student"
N_TRAIN = 16000
# The largest vocabulary at which the default 3-layer student's model.safetensors is at most half
# its untrimmed 69,568,832 bytes: each token dropped saves one 384-float row (1,536 bytes), and
# 69,568,832 - (30,522 - 7,875) * 1,536 = 34,783,040 <= 34,784,416 (7,876 tokens: 34,784,576).
HALF_SIZE_TOKENS = 7875


def runs(unlabeled: Path, all_unlabeled: Path, ensemble=()) -> dict[str, list[str]]:
    """name -> extra `distill student` arguments; each trains on ~48k samples, except
    ce_only_1_epoch (16k), ce_only_4_epochs (64k), kd_all_unlabeled (67k; 134k at 2 epochs),
    default_plus_unlabeled (80k) and defaults (144k).
    kd_all_unlabeled_ensemble needs the bench's --ensemble-teacher."""
    unl = ["--unlabeled", str(unlabeled), "--augment-factor", "0"]
    all_unl = ["--unlabeled", str(all_unlabeled), "--augment-factor", "0"]
    members = [arg for path in ensemble for arg in ("--ensemble-teacher", str(path))]
    return {
        "ce_only": ["--alpha", "0", "--augment-factor", "0", "--epochs", "3"],
        "ce_only_1_epoch": ["--alpha", "0", "--augment-factor", "0", "--epochs", "1"],
        "ce_only_4_epochs": ["--alpha", "0", "--augment-factor", "0", "--epochs", "4"],
        "kd_labelled": ["--augment-factor", "0", "--epochs", "3"],
        "kd_labelled_trim": ["--augment-factor", "0", "--epochs", "3", "--trim-vocab"],
        "kd_labelled_trim_min4": ["--augment-factor", "0", "--epochs", "3", "--trim-vocab", "--trim-min-count", "4"],
        "kd_labelled_trim_seen": ["--augment-factor", "0", "--epochs", "3", "--trim-vocab", "--trim-characters", "seen"],
        "kd_labelled_trim_min3_seen": ["--augment-factor", "0", "--epochs", "3", "--trim-vocab",
                                       "--trim-min-count", "3", "--trim-characters", "seen"],
        "kd_labelled_trim_half_seen": ["--augment-factor", "0", "--epochs", "3", "--trim-vocab",
                                       "--trim-characters", "seen", "--trim-max-tokens", str(HALF_SIZE_TOKENS)],
        "kd_labelled_trim_half_seen_vocab": ["--augment-factor", "0", "--epochs", "3", "--trim-vocab",
                                             "--trim-characters", "seen", "--trim-max-tokens", str(HALF_SIZE_TOKENS),
                                             "--trim-rank", "vocab"],
        "kd_labelled_trim_half_seen_after": ["--augment-factor", "0", "--epochs", "3", "--trim-vocab",
                                             "--trim-characters", "seen", "--trim-max-tokens", str(HALF_SIZE_TOKENS),
                                             "--trim-after-training"],
        "kd_augment": ["--augment-factor", "2", "--epochs", "1"],
        "kd_unlabeled": [*unl, "--epochs", "1"],
        "kd_unlabeled_alpha1": [*unl, "--epochs", "1", "--alpha", "1"],
        "kd_unlabeled_random_init": [*unl, "--epochs", "1", "--init", "random"],
        "kd_unlabeled_2_layers": [*unl, "--epochs", "1", "--layers", "2"],
        "kd_unlabeled_trim_vocab": [*unl, "--epochs", "1", "--trim-vocab"],
        "kd_unlabeled_trim_min10": [*unl, "--epochs", "1", "--trim-vocab", "--trim-min-count", "10"],
        "kd_all_unlabeled": [*all_unl, "--epochs", "1"],
        "kd_all_unlabeled_2_epochs": [*all_unl, "--epochs", "2"],
        "kd_all_unlabeled_ensemble": [*all_unl, "--epochs", "1", *members],
        "default_plus_unlabeled": ["--unlabeled", str(unlabeled), "--epochs", "1"],
        "defaults": [],
    }


DESCRIPTIONS = {
    "ce_only": "CE only, 16k labelled rows, 3 epochs",
    "ce_only_1_epoch": "CE only, 16k labelled rows, 1 epoch (16k samples)",
    "ce_only_4_epochs": "CE only, 16k labelled rows, 4 epochs (64k samples, about kd_all_unlabeled's 67k)",
    "kd_labelled": "KD (alpha 0.5, T 2), 16k labelled rows, 3 epochs",
    "kd_labelled_trim": "as kd_labelled, --trim-vocab (every token the labelled rows use)",
    "kd_labelled_trim_min4": "as kd_labelled, --trim-vocab --trim-min-count 4",
    "kd_labelled_trim_seen": "as kd_labelled, --trim-vocab --trim-characters seen",
    "kd_labelled_trim_min3_seen": "as kd_labelled, --trim-vocab --trim-min-count 3 --trim-characters seen",
    "kd_labelled_trim_half_seen": f"as kd_labelled, --trim-vocab --trim-characters seen --trim-max-tokens "
                                  f"{HALF_SIZE_TOKENS} (the most tokens that halve the saved student)",
    "kd_labelled_trim_half_seen_vocab": "as kd_labelled_trim_half_seen, --trim-rank vocab (the budget filled "
                                        "in vocabulary order, not by count)",
    "kd_labelled_trim_half_seen_after": "as kd_labelled_trim_half_seen, --trim-after-training (trained with the "
                                        "full vocabulary, the final model trimmed)",
    "kd_augment": "KD + augmentation x2 (32k texts), 1 epoch",
    "kd_unlabeled": "KD + 32k unlabelled SST-2 texts, 1 epoch",
    "kd_unlabeled_alpha1": "as kd_unlabeled, pure KD (alpha 1)",
    "kd_unlabeled_random_init": "as kd_unlabeled, random init",
    "kd_unlabeled_2_layers": "as kd_unlabeled, 2 layers (0,3)",
    "kd_unlabeled_trim_vocab": "as kd_unlabeled, --trim-vocab",
    "kd_unlabeled_trim_min10": "as kd_unlabeled, --trim-vocab --trim-min-count 10",
    "kd_all_unlabeled": "KD + all 51k other SST-2 training texts, unlabelled, 1 epoch",
    "kd_all_unlabeled_2_epochs": "as kd_all_unlabeled, 2 epochs (134k samples)",
    "kd_all_unlabeled_ensemble": "as kd_all_unlabeled, from the mean logits of the teacher and --ensemble-teacher",
    "default_plus_unlabeled": "defaults (aug x2) + 32k unlabelled, 1 epoch",
    "defaults": "all defaults: KD + augmentation x2, 3 epochs (144k samples)",
}


def write_unlabeled(data, path: Path, n_train: int, n_unlabeled: int) -> int:
    """n_unlabeled of the SST-2 training rows `data` outside the teacher's subset (the permutation
    subsample uses), without labels."""
    import numpy as np

    pick = np.random.default_rng(0).permutation(len(data))[n_train:n_train + n_unlabeled]
    texts = [data.texts[i] for i in pick]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(t.replace("\n", " ") + "\n" for t in texts), encoding="utf-8")
    return len(texts)


def run_key(name: str, seed: int) -> str:
    """The results' name of a run with a training seed: RUN for seed 0, RUN@SEED otherwise."""
    return name if seed == 0 else f"{name}@{seed}"


def base_name(key: str) -> str:
    return key.split("@")[0]


def seed_of(key: str) -> int:
    return int(key.split("@")[1]) if "@" in key else 0


def run_student(name, extra, common, out_dir: Path) -> dict:
    out = out_dir / name
    resume = ["--resume"] if list((out_dir / f"{name}.checkpoints").glob("checkpoint-*")) else []
    cmd = [sys.executable, "-m", "distill.cli", "student", *common, "--out", str(out), *extra, *resume]
    print(f"\n### {name}: {DESCRIPTIONS.get(base_name(name), '')}\n$ {' '.join(cmd)}", flush=True)
    start = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{name} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    print(done.stdout[-1500:], flush=True)
    return summarise(name, extra, out, round(time.time() - start, 1))


def summarise(name: str, extra: list[str], out: Path, wall_seconds: float) -> dict:
    """One results row from a finished run's training.json. teacher_logit_seconds counts every
    teacher's scoring pass (ensemble members too), 0 for parts the cache held."""
    report = json.loads((out / "training.json").read_text())
    c, d = report["comparison"], report["distillation"]
    ensemble = d.get("ensemble")
    members = ensemble["members"] if ensemble else []
    return {"name": name, "description": DESCRIPTIONS.get(base_name(name), ""), "args": extra,
            "accuracy": report["final_eval"]["accuracy"], "macro_f1": report["final_eval"]["macro_f1"],
            "teacher_accuracy": c["teacher"]["accuracy"], "retention": c["retention"],
            "rows": report["data"]["rows"], "train_rows": report["data"]["train_rows_used"],
            "samples_seen": round(report["data"]["train_rows_used"] * report["config"]["epochs"]),
            "train_seconds": report["train_seconds"], "wall_seconds": wall_seconds,
            "teacher_logit_seconds": sum(p["seconds"] for p in d["teacher_logits"].values())
            + sum(p["seconds"] for m in members for p in m["teacher_logits"].values()),
            "cache_hits": {k: p["cache_hit"] for k, p in d["teacher_logits"].items()},
            "parameters": c["student"]["parameters"], "size_bytes": c["student"]["size_bytes"],
            "teacher_size_bytes": c["teacher"]["size_bytes"],
            "student_samples_per_second": c["student"].get("samples_per_second"),
            "teacher_samples_per_second": c["teacher"].get("samples_per_second"),
            "vocab": d.get("vocab"), "out": str(out),
            "ensemble": {"accuracy": ensemble["eval"]["accuracy"], "retention": ensemble["student_retention"],
                         "members": [m["teacher"] for m in members]} if ensemble else None}


def write_labelled_subset(data, path: Path, n_train: int) -> Path:
    """The teacher's n_train rows of `data` (subsample seed 0, as --max-train-samples N --seed 0
    picks them) as a sentence/label TSV, so that other training seeds train on the same rows."""
    from distill.data import subsample

    data = subsample(data, n_train, 0)
    lines = ["sentence\tlabel"] + [f"{t}\t{data.label_names[y]}" for t, y in zip(data.texts, data.labels)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def seed_summary(rows: list[dict]) -> str:
    """Mean and sample standard deviation of dev accuracy per run over its seeds (RUN, RUN@S)."""
    import numpy as np

    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(base_name(r["name"]), []).append(100 * r["accuracy"])
    lines = [f"{'run':28}{'seeds':>6}{'mean':>8}{'sd':>6}  accuracies"]
    for name, accs in groups.items():
        sd = float(np.std(accs, ddof=1)) if len(accs) > 1 else float("nan")
        lines.append(f"{name:28}{len(accs):6d}{np.mean(accs):8.2f}{sd:6.2f}  " + ", ".join(f"{a:.2f}" for a in accs))
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    head = (f"{'run':28}{'dev acc':>9}{'retain':>8}{'macro-F1':>9}{'samples':>9}{'train s':>9}{'teacher s':>10}"
            f"{'params':>12}{'MB':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['name']:28}{100 * r['accuracy']:9.2f}{100 * r['retention']:8.1f}{r['macro_f1']:9.4f}"
                     f"{r['samples_seen']:9d}{r['train_seconds']:9.0f}{r['teacher_logit_seconds']:10.0f}"
                     f"{r['parameters']:12,}{r['size_bytes'] / 1e6:7.1f}")
    return "\n".join(lines)


# ---------------------------------------------------------------- teacher in the loop vs cached

def measure_speedup(teacher_dir: str, data: Path, n_rows: int, epochs: int = 3) -> dict:
    """One epoch of a 3-layer student on n_rows SST-2 rows, in this process, two ways:
    cached (one teacher scoring pass, then training on the stored logits) and teacher in the loop
    (a Trainer that runs the teacher on every batch). Multi-epoch and cache-hit figures follow
    from the measured parts: the in-loop teacher cost recurs every epoch, the scoring pass does not."""
    import tempfile

    import numpy as np
    import torch
    from transformers import DataCollatorWithPadding

    from distill.data import DataOptions, load_labelled, subsample
    from distill.losses import distillation_loss
    from distill.predict import load_model_dir, predict_logits
    from distill.student import StudentConfig
    from distill.student_model import build_student
    from distill.trainer import DistillationArguments, DistillationTrainer
    from distill.training import encode_rows

    teacher, tokenizer, labels = load_model_dir(teacher_dir)
    train = subsample(load_labelled(data / "train.tsv", DataOptions(text_column="sentence"), labels=labels),
                      n_rows, 0)

    class TeacherInLoopTrainer(DistillationTrainer):
        """What caching avoids: the teacher scores each training batch inside compute_loss."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels_ = inputs.pop("labels")
            with torch.no_grad():
                teacher_logits = teacher(**inputs).logits
            outputs = model(**inputs)
            loss = distillation_loss(outputs.logits, teacher_logits, labels_, self.args.temperature,
                                     self.args.alpha)["loss"]
            return (loss, outputs) if return_outputs else loss

    def train_once(trainer_cls, **extras):
        student, _, _ = build_student(teacher, StudentConfig(layers=3, seed=0))
        rows = encode_rows(tokenizer, train.texts, 128, labels=train.labels, **extras)
        with tempfile.TemporaryDirectory() as tmp:
            args = DistillationArguments(output_dir=tmp, num_train_epochs=1, per_device_train_batch_size=32,
                                         learning_rate=1e-4, save_strategy="no", eval_strategy="no", report_to=[],
                                         disable_tqdm=True, logging_steps=10_000, seed=0, remove_unused_columns=False,
                                         train_sampling_strategy="group_by_length")
            trainer = trainer_cls(model=student, args=args, train_dataset=rows,
                                  data_collator=DataCollatorWithPadding(tokenizer))
            start = time.perf_counter()
            trainer.train()
            return time.perf_counter() - start

    predict_logits(teacher, tokenizer, train.texts[:256], 128, 128)            # warm-up
    start = time.perf_counter()
    logits = predict_logits(teacher, tokenizer, train.texts, 128, 128)
    score_s = time.perf_counter() - start
    cached_s = train_once(DistillationTrainer, teacher_logits=np.asarray(logits).tolist())
    in_loop_s = train_once(TeacherInLoopTrainer)
    result = {"rows": len(train), "torch_threads": torch.get_num_threads(),
              "teacher_scoring_pass_s": round(score_s, 2), "train_epoch_cached_s": round(cached_s, 2),
              "train_epoch_teacher_in_loop_s": round(in_loop_s, 2),
              "speedup_1_epoch": round(in_loop_s / (score_s + cached_s), 3),
              f"speedup_{epochs}_epochs": round(epochs * in_loop_s / (score_s + epochs * cached_s), 3),
              "speedup_cache_hit_per_epoch": round(in_loop_s / cached_s, 3)}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("DISTILL_DATA_DIR", ROOT.parent / "shared" / "data"))
    parser.add_argument("--teacher", default=str(ROOT / "models" / "sst2-teacher"))
    parser.add_argument("--ensemble-teacher", action="append", default=[], metavar="DIR",
                        help="another teacher for kd_all_unlabeled_ensemble (repeatable; trained on the same rows)")
    parser.add_argument("--runs", default=None, help="comma-separated subset of: " + ", ".join(DESCRIPTIONS))
    parser.add_argument("--n-train", type=int, default=N_TRAIN, help="labelled rows: the teacher's subset")
    parser.add_argument("--n-unlabeled", type=int, default=32000, help="unlabelled transfer texts")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (see above)")
    parser.add_argument("--out-dir", default=str(ROOT / "models" / "sst2-ablation"))
    parser.add_argument("--cache-dir", default=str(RESULTS / "cache"))
    parser.add_argument("--results", default=str(RESULTS / "ablation.json"),
                        help="the table's JSON (runs already in it are kept; rerun ones replaced)")
    parser.add_argument("--save", default=None, metavar="RUN:DIR",
                        help="copy one run's student to DIR, e.g. default_plus_unlabeled:models/sst2-student")
    speedup = parser.add_mutually_exclusive_group()
    speedup.add_argument("--speedup-only", action="store_true", help="only the teacher-in-the-loop comparison")
    speedup.add_argument("--no-speedup", action="store_true", help="skip the teacher-in-the-loop comparison")
    parser.add_argument("--speedup-rows", type=int, default=2000)
    args = parser.parse_args()

    data = Path(args.data) / "sst2"
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.speedup_only:
        from distill.data import DataOptions, load_labelled

        train = load_labelled(data / "train.tsv", DataOptions(text_column="sentence"))
        unlabeled = RESULTS / "unlabeled.txt"
        n_unl = write_unlabeled(train, unlabeled, args.n_train, args.n_unlabeled)
        print(f"unlabelled transfer texts: {n_unl} SST-2 training rows outside the {args.n_train}-row subset "
              f"-> {unlabeled}")
        shared = ["--teacher", args.teacher, "--eval", str(data / "dev.tsv"), "--text-column", "sentence",
                  "--cache-dir", args.cache_dir, "--force", "--quiet"]
        common = [*shared, "--train", str(data / "train.tsv"), "--max-train-samples", str(args.n_train), "--seed", "0"]
        all_unlabeled = RESULTS / "unlabeled_all.txt"
        plan = runs(unlabeled, all_unlabeled, args.ensemble_teacher)
        chosen = args.runs.split(",") if args.runs else [n for n in plan if n != "kd_all_unlabeled_ensemble"]
        unknown = [n for n in chosen if n not in plan]
        if unknown:
            sys.exit(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(plan)}")
        if "kd_all_unlabeled_ensemble" in chosen and not args.ensemble_teacher:
            sys.exit("kd_all_unlabeled_ensemble needs --ensemble-teacher DIR")
        if any(str(all_unlabeled) in plan[n] for n in chosen):     # only those runs read it
            write_unlabeled(train, all_unlabeled, args.n_train, 10**9)
        seeds = [int(s) for s in args.seeds.split(",")]
        if any(seeds):
            subset = write_labelled_subset(train, RESULTS / f"labelled-{args.n_train}.tsv", args.n_train)
            seeded = [*shared, "--train", str(subset)]
        results_file = Path(args.results)
        previous = json.loads(results_file.read_text()) if results_file.exists() else {}
        rows = {r["name"]: r for r in previous.get("runs", [])}
        known = {seed_of(n) for n in rows}          # seeded runs of earlier calls stay
        order = [run_key(n, s) for s in sorted(set(seeds) | known | {0}) for n in plan]

        def ordered() -> list[dict]:
            return [rows[n] for n in order if n in rows]

        for seed in seeds:
            for name in chosen:
                key = run_key(name, seed)
                args_ = common if seed == 0 else [*seeded, "--seed", str(seed)]
                rows[key] = run_student(key, plan[name], args_, Path(args.out_dir))
                results_file.write_text(json.dumps({"teacher": args.teacher, "n_train": args.n_train,
                                                    "runs": ordered()}, indent=2))
        print("\n" + table(ordered()))
        if any("@" in name for name in rows):
            print("\n" + seed_summary(ordered()))
        print(f"\nresults: {results_file}")
        if args.save:
            import shutil

            name, target = args.save.split(":", 1)
            target = Path(target)
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(rows[name]["out"], target)
            print(f"{name} student saved to {target}")
    if args.no_speedup:
        return
    speed = measure_speedup(args.teacher, data, args.speedup_rows)
    (RESULTS / "speedup.json").write_text(json.dumps(speed, indent=2))
    print(json.dumps(speed, indent=2))


if __name__ == "__main__":
    main()
