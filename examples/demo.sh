#!/usr/bin/env bash
# The README's demo: labelled reviews -> teacher -> student -> int8 bundle -> report card, then
# the numpy-only runtime classifies a few sentences. Run through `make demo` (which sets up .venv
# first); outputs go to models/demo/ (report.md, plots/, student-int8/ ...). Running it again
# skips every stage whose settings and inputs did not change.
set -euo pipefail
cd "$(dirname "$0")/.."

distill pipeline --config examples/pipeline.toml --quiet

python -m runtime models/demo/student-int8 \
  "Absolutely loved it, the battery lasts for days." \
  "It broke after two days and support never answered." \
  "It arrived on Tuesday and does what the box says."
