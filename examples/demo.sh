#!/usr/bin/env bash
# The README's demo: labelled reviews -> teacher -> student -> int8 bundle -> report card,
# `distill eval` of the teacher and of the int8 bundle, then the numpy-only runtime classifies a
# few sentences. Run through `make demo` (which sets up .venv first); outputs go to models/demo/
# (report.md, plots/, eval-*.json/png, student-int8/ ...). Running it again skips every pipeline
# stage whose settings and inputs did not change.
set -euo pipefail
cd "$(dirname "$0")/.."

distill pipeline --config examples/pipeline.toml --quiet

# The teacher and the shipped int8 student on the held-out reviews: per-class report, confusion
# matrix, JSON and PNG beside the pipeline's report card.
distill eval models/demo/teacher --data examples/reviews_test.csv \
  --json models/demo/eval-teacher.json --plot models/demo/eval-teacher.png
distill eval models/demo/student-int8 --data examples/reviews_test.csv --engine numpy \
  --json models/demo/eval-student-int8.json --plot models/demo/eval-student-int8.png

python -m runtime models/demo/student-int8 \
  "Absolutely loved it, the battery lasts for days." \
  "It broke after two days and support never answered." \
  "It arrived on Tuesday and does what the box says."
