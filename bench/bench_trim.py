"""What `--trim-vocab` costs before any training: the teacher scored on SST-2 dev through a trimmed
vocabulary, per trimming setting, beside the 3-layer student's size.

usage: python bench/bench_trim.py [--data DIR] [--teacher models/sst2-teacher] [--min-counts 1,2,4,10]
                                  [--characters all,seen] [--max-tokens N --ranks count,vocab]
                                  [--results bench/results/trim.json]

The texts are those of bench_student.py (run it first, or any run of it, for the files): the
teacher's 16k labelled rows (bench/results/student/labelled-16000.tsv), alone and with the 51k
other training texts (unlabeled_all.txt). For each --trim-min-count N, the kept tokens are those
`distill student --trim-vocab --trim-min-count N --trim-characters C` keeps (distill/vocab_trim.py),
for each C of --characters; with --max-tokens, also capped at N tokens (`--trim-max-tokens N`),
for each rank R of --ranks (`--trim-rank R`). Columns:
  tokens         vocabulary after trimming (30,522 before)
  smaller        the default 3-layer student's parameters before / after (its saved size, float32)
  retokenized    dev texts that now split into other pieces: only these can change prediction
  teacher acc    the teacher, its embedding rows trimmed the same way, no retraining, on dev
A trained student adapts to the new pieces (bench_student.py kd_labelled_trim_min4 measures it);
the teacher column isolates the cost of losing the words the kept tokens lack. --teacher may be
any model directory: given an untrimmed student, a row is what `distill student
--trim-after-training` would make of it (bench_student.py kd_labelled_trim_half_seen_after).
Results: a table on stdout and --results.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
STUDENT = ROOT / "bench" / "results" / "student"


def main():
    import torch

    from distill.data import DataOptions, load_labelled
    from distill.predict import default_max_length, load_model_dir, predict_logits
    from distill.student import StudentConfig
    from distill.student_model import build_student
    from distill.training import count_parameters
    from distill.vocab_trim import (kept_ids_from_counts, retokenized, token_counts, trim_embeddings,
                                    trimmed_tokenizer)

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("DISTILL_DATA_DIR", ROOT.parent / "shared" / "data"))
    parser.add_argument("--teacher", default=str(ROOT / "models" / "sst2-teacher"))
    parser.add_argument("--min-counts", default="1,2,4,10")
    parser.add_argument("--characters", default="all",
                        help="comma-separated --trim-characters settings to compare (all, seen)")
    parser.add_argument("--max-tokens", type=int, default=None, help="--trim-max-tokens for every row")
    parser.add_argument("--ranks", default="count",
                        help="with --max-tokens: comma-separated --trim-rank settings to compare (count, vocab)")
    parser.add_argument("--results", default=str(ROOT / "bench" / "results" / "trim.json"))
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    labelled_file, unlabeled_file = STUDENT / "labelled-16000.tsv", STUDENT / "unlabeled_all.txt"
    for path in (labelled_file, unlabeled_file):
        if not path.exists():
            raise SystemExit(f"{path} is missing: run bench/bench_student.py first (it writes it)")
    options = DataOptions(text_column="sentence")
    teacher, tokenizer, labels = load_model_dir(args.teacher)
    dev = load_labelled(Path(args.data) / "sst2" / "dev.tsv", options, labels=labels)
    max_length = default_max_length(args.teacher, tokenizer)      # what `distill student` uses
    dev_y = np.asarray(dev.labels)
    full_acc = float((predict_logits(teacher, tokenizer, dev.texts, max_length).argmax(1) == dev_y).mean())
    student, _, _ = build_student(teacher, StudentConfig(layers=3))
    student_params = count_parameters(student)
    hidden = teacher.config.hidden_size
    labelled = load_labelled(labelled_file, options).texts
    unlabeled = unlabeled_file.read_text(encoding="utf-8").splitlines()
    print(f"teacher {args.teacher}: dev accuracy {100 * full_acc:.2f}% with its {tokenizer.vocab_size:,} tokens; "
          f"3-layer student {student_params:,} parameters")

    text_sets = (("16k labelled", labelled), ("16k labelled + 51k unlabelled", labelled + unlabeled))
    counts_of = {name: token_counts(tokenizer, texts, max_length) for name, texts in text_sets}   # once per set
    rows = []
    ranks = args.ranks.split(",") if args.max_tokens else ["count"]
    settings = [(c, r) for c in args.characters.split(",") for r in ranks]
    for characters, rank in settings:
        for name, counts in counts_of.items():
            for min_count in (int(m) for m in args.min_counts.split(",")):
                kept = kept_ids_from_counts(tokenizer, counts, min_count, characters, args.max_tokens, rank)
                trimmed = trimmed_tokenizer(tokenizer, kept)
                model = copy.deepcopy(teacher)
                trim_embeddings(model, kept)
                small = student_params - (tokenizer.vocab_size - len(kept)) * hidden   # one embedding row per token
                acc = float((predict_logits(model, trimmed, dev.texts, max_length).argmax(1) == dev_y).mean())
                rows.append({"texts": name, "characters": characters, "min_count": min_count,
                             "max_tokens": args.max_tokens, "rank": rank,
                             "tokens": int(len(kept)), "student_parameters": small,
                             "smaller": student_params / small,
                             "retokenized": retokenized(tokenizer, trimmed, dev.texts, max_length),
                             "teacher_accuracy": acc, "teacher_change_points": 100 * (acc - full_acc)})
                r = rows[-1]
                print(f"{name:30} {characters:4} {rank:5} min {min_count:3}: {r['tokens']:6,} tokens  "
                      f"{r['smaller']:.2f}x smaller  {r['retokenized']['changed']:4} of "
                      f"{r['retokenized']['texts']} dev texts retokenized  "
                      f"teacher {100 * acc:.2f}% ({r['teacher_change_points']:+.2f})", flush=True)
    lines = ["| texts | --trim-characters | --trim-rank | --trim-min-count | tokens | student smaller "
             "| dev texts retokenized | teacher dev acc |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['texts']} | {r['characters']} | {r['rank']} | {r['min_count']} | {r['tokens']:,} | "
                     f"{r['smaller']:.2f}x | "
                     f"{r['retokenized']['changed']} ({100 * r['retokenized']['fraction']:.0f}%) | "
                     f"{100 * r['teacher_accuracy']:.2f} ({r['teacher_change_points']:+.2f}) |")
    table = "\n".join(lines)
    print(table)
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({"teacher": args.teacher, "teacher_accuracy": full_acc,
                                   "max_tokens": args.max_tokens,
                                   "student_parameters": student_params, "table": table,
                                   "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
