"""End to end: `Classifier.predict` (numpy runtime, its own tokenizer) against the path a user
would otherwise write (Hugging Face fast tokenizer + onnxruntime, batches of 32 in input order).

    .venv/bin/python bench/bench_classifier.py BUNDLE [--data TSV] [--text-column sentence]

Both paths start from raw strings and end with labels; tokenizing, padding, batching and the
model are all inside the timed region. One thread each: OMP/OpenBLAS set to 1 before numpy
loads, onnxruntime intra_op_num_threads=1, the Rust tokenizer RAYON_NUM_THREADS=1. Rounds
alternate the order of the paths; each path's figure is its fastest round (wall and CPU
time). The runtime's tokenizer caches WordPiece results per word; it is rebuilt (untimed)
before each round, so repeated rounds over the same texts do not flatter it. Also timed, for
context: the user path with length-sorted batches (what the Classifier does internally), and
each tokenizer alone. Prints texts/s and ratios and label
agreement, and writes JSON to bench/results/.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
             "RAYON_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_runtime import DATA, read_texts  # noqa: E402


class UserPath:
    """Hugging Face fast tokenizer + onnxruntime, as in the onnxruntime tutorials."""

    def __init__(self, bundle: Path, sort: bool = False, batch_size: int = 32):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        config = json.loads((bundle / "runtime.json").read_text())
        self.labels, self.inputs, self.max_length = config["labels"], config["inputs"], config["max_length"]
        self.tokenizer = AutoTokenizer.from_pretrained(str(bundle))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(bundle / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.sort, self.batch_size = sort, batch_size

    def encode(self, texts):
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="np")
        return {name: enc[name].astype(np.int64) for name in self.inputs}

    def logits(self, texts):
        order = sorted(range(len(texts)), key=lambda i: len(texts[i])) if self.sort else range(len(texts))
        order = list(order)
        out = np.empty((len(texts), len(self.labels)), np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            out[idx] = self.session.run(None, self.encode([texts[i] for i in idx]))[0]
        return out

    def predict(self, texts):
        return [self.labels[i] for i in self.logits(texts).argmax(axis=1)]


def fastest(paths: dict, texts, rounds: int, setup: dict | None = None) -> tuple:
    """{name: best wall s}, {name: best CPU s}, {name: last predictions}; order rotates.
    setup[name](), when given, runs untimed before each of that path's rounds."""
    wall = {name: float("inf") for name in paths}
    cpu = {name: float("inf") for name in paths}
    preds = {}
    names = list(paths)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if setup and name in setup:
                setup[name]()
            start, start_cpu = time.perf_counter(), time.process_time()
            preds[name] = paths[name](texts)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
            wall[name] = min(wall[name], time.perf_counter() - start)
    return wall, cpu, preds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--data", type=Path, default=DATA / "sst2" / "dev.tsv")
    ap.add_argument("--text-column", default=None)
    ap.add_argument("--limit", type=int, default=None, help="only the first N texts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)

    from runtime import Classifier
    from runtime.classifier import read_runtime_config
    from runtime.tokenizer import WordPieceTokenizer

    texts = read_texts(args.data, args.text_column, args.limit)
    n = len(texts)
    start = time.perf_counter()
    clf = Classifier.load(args.bundle)
    load_s = time.perf_counter() - start
    user, user_sorted = UserPath(args.bundle), UserPath(args.bundle, sort=True)
    print(f"bundle {args.bundle} ({clf.quantization or 'fp32'}), {n} texts from {args.data}, "
          f"batches of 32, one thread, {args.rounds} rounds (each path's fastest)")

    settings = read_runtime_config(args.bundle)["tokenizer"]

    def fresh_tokenizer():
        """A new tokenizer, so its per-word cache starts empty every round (the texts repeat)."""
        clf.tokenizer = WordPieceTokenizer.from_config(args.bundle / "vocab.txt", settings)

    cold = {"numpy Classifier.predict": fresh_tokenizer, "runtime WordPiece": fresh_tokenizer}
    wall, cpu, preds = fastest({"numpy Classifier.predict": clf.predict,
                                "HF fast + onnxruntime": user.predict,
                                "HF fast + onnxruntime, sorted": user_sorted.predict},
                               texts, args.rounds, cold)
    tok_wall, tok_cpu, _ = fastest({
        "runtime WordPiece": lambda t: [clf.tokenizer.encode(x, clf.max_length) for x in t],
        "HF fast tokenizer": lambda t: [user.encode(t[i:i + 32]) for i in range(0, len(t), 32)]},
        texts, args.rounds, cold)

    ours, theirs = "numpy Classifier.predict", "HF fast + onnxruntime"
    agree = float(np.mean([a == b for a, b in zip(preds[ours], preds[theirs])]))
    result = {"bundle": str(args.bundle), "quantization": clf.quantization, "texts": n,
              "data": str(args.data), "rounds": args.rounds, "load_s": load_s,
              "texts_per_s": {k: n / v for k, v in wall.items()},
              "cpu_texts_per_s": {k: n / v for k, v in cpu.items()},
              "tokenizer_texts_per_s": {k: n / v for k, v in tok_wall.items()},
              "ratio_vs_user_path": wall[theirs] / wall[ours],
              "cpu_ratio_vs_user_path": cpu[theirs] / cpu[ours],
              "ratio_vs_user_path_sorted": wall[theirs + ", sorted"] / wall[ours],
              "label_agreement": agree, "load_average": os.getloadavg()[0]}
    for name in wall:
        print(f"{name:32s} {n / wall[name]:8.1f} texts/s   (CPU time: {n / cpu[name]:8.1f} texts/s)")
    for name in tok_wall:
        print(f"  tokenizing only: {name:18s} {n / tok_wall[name]:8.0f} texts/s")
    print(f"ratio numpy Classifier / (HF fast + onnxruntime, input order): "
          f"{result['ratio_vs_user_path']:.2f}x wall, {result['cpu_ratio_vs_user_path']:.2f}x CPU; "
          f"vs length-sorted batches {result['ratio_vs_user_path_sorted']:.2f}x")
    note = (" (int8: the paths batch texts differently, and each activation's quantization scale "
            "depends on its batch)") if clf.quantization else ""
    print(f"labels agree on {agree * 100:.2f}% of texts{note}; Classifier.load {load_s * 1000:.0f} ms; "
          f"load average {result['load_average']:.1f}")

    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"classifier_{args.bundle.name}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
