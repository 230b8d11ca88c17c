"""Memory of the steps that grow with the data: tokenizing every training/scoring/eval text, and
reading a data file. Each measure runs in a fresh interpreter and reports the peak resident
memory it adds (ru_maxrss after the step minus before it), so the ratios compare like with like.

- tokenize: the default teacher's tokenizer on N texts (SST-2 training sentences, repeated to N),
  as Hugging Face gives them (one call, lists of Python ints, kept) against
  distill.token_rows.tokenize_rows (what teach, student, eval and the teacher pass use);
- read: distill.data.load_labelled on a TSV of N rows, against the file's size.

Run: .venv/bin/python bench/bench_memory.py [--rows 200000] [--data ../shared/data]   (Linux, macOS)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys
sys.path.insert(0, {root!r})
from bench.bench_memory import texts_from
texts = texts_from({data!r}, {rows})
{setup}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
{step}
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
per_mb = 2 ** 20 if sys.platform == "darwin" else 1024      # ru_maxrss: bytes on macOS, KiB on Linux
print(json.dumps({{"added_mb": (after - before) / per_mb, "tokens": {tokens}}}))
"""
TOKENIZER = ("from distill.teacher import default_teacher_path\n"
             "from distill.tokenization import load_tokenizer\n"
             "tok = load_tokenizer(default_teacher_path())\n"
             "tok(texts[:10], truncation=True, max_length=128)")
STEPS = {
    "tokenize, Hugging Face lists": (TOKENIZER, "kept = tok(texts, truncation=True, max_length=128)",
                                     "sum(len(x) for x in kept['input_ids'])"),
    "tokenize, token_rows": (TOKENIZER + "\nfrom distill.token_rows import tokenize_rows",
                             "kept = tokenize_rows(tok, texts, 128)", "int(kept.lengths().sum())"),
    "read the TSV, load_labelled": ("from distill.data import DataOptions, load_labelled",
                                    "kept = load_labelled({tsv!r}, DataOptions(text_column='sentence'))",
                                    "0"),
}


def texts_from(data: str, rows: int) -> list[str]:
    lines = (Path(data) / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    sentences = [line.split("\t")[1] for line in lines]       # label<TAB>sentence
    return [sentences[i % len(sentences)] for i in range(rows)]


def measure(name: str, data: str, rows: int, tsv: str) -> dict:
    setup, step, tokens = STEPS[name]
    code = CHILD.format(root=str(ROOT), data=data, rows=rows, setup=setup, step=step.format(tsv=tsv), tokens=tokens)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"})
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="texts (default 200,000)")
    parser.add_argument("--data", default=os.environ.get("DISTILL_DATA_DIR", str(ROOT.parent / "shared" / "data")),
                        help="the shared data directory (default ../shared/data or $DISTILL_DATA_DIR)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tsv = Path(tmp) / "train.tsv"
        tsv.write_text("sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(texts_from(args.data, args.rows))),
                       encoding="utf-8")
        file_mb = tsv.stat().st_size / 2 ** 20
        results = {name: measure(name, args.data, args.rows, str(tsv)) for name in STEPS}
    hf, compact = results["tokenize, Hugging Face lists"], results["tokenize, token_rows"]
    print(f"{args.rows:,} texts, {compact['tokens']:,} tokens (max_length 128); TSV {file_mb:.1f} MB")
    print(f"{'step':<32} {'peak MB added':>14} {'bytes/token':>12}")
    for name, result in results.items():
        per_token = f"{result['added_mb'] * 2 ** 20 / result['tokens']:.0f}" if result["tokens"] else "-"
        print(f"{name:<32} {result['added_mb']:>14.0f} {per_token:>12}")
    print(f"token_rows adds {hf['added_mb'] / max(compact['added_mb'], 1e-9):.1f}x less than the lists; "
          f"reading adds {results['read the TSV, load_labelled']['added_mb'] / file_mb:.1f}x the file's size")
    out = ROOT / "bench" / "results" / "memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": args.rows, "file_mb": file_mb, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
