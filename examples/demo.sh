#!/usr/bin/env bash
# The README's demo: labelled reviews -> teacher -> evaluation report.
# Run through `make demo` (which sets up .venv first); outputs go to models/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=models/demo
mkdir -p "$out"

distill teach --train examples/reviews_train.csv --eval examples/reviews_test.csv \
  --out "$out/teacher" --epochs 6 --lr 1e-4 --batch-size 16 --max-length 64 --force --quiet

distill eval "$out/teacher" --data examples/reviews_test.csv \
  --json "$out/teacher-eval.json" --plot "$out/teacher-confusion.png"
