"""Throughput of the numpy runtime against onnxruntime and the ONNX reference evaluator.

    .venv/bin/python bench/bench_runtime.py BUNDLE_OR_MODEL [--data TSV] [--tokenizer DIR]

Texts are tokenized once (Hugging Face fast tokenizer from the bundle, or --tokenizer), sorted
by length and cut into the same padded batches (batch 32) for every engine, all on one thread
(OMP/OpenBLAS/MKL set to 1 before numpy loads; onnxruntime intra_op_num_threads=1). Prints
sentences/s and ratios, logit parity, the numpy runtime's matmul GFLOP/s against numpy's own
float32 matmul peak measured in the same process, and writes JSON to bench/results/.
The reference evaluator is slow: it runs an evenly spaced subset of the batches and its rate
is extrapolated (the output says so); it is skipped for int8 graphs (it cannot run them).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("DISTILL_DATA_DIR", ROOT.parent / "shared" / "data"))
MATMUL_OPS = {"MatMul", "Gemm", "MatMulInteger"}


def read_texts(path: Path, column: str | None, limit: int | None) -> list[str]:
    """Texts from a .tsv/.csv with a header (column `sentence` or `text`, or --text-column), or
    from a headerless THUCNews-style .txt (`text<TAB>label`; --text-column is then an index)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="," if path.suffix == ".csv" else "\t",
                               quoting=csv.QUOTE_MINIMAL if path.suffix == ".csv" else csv.QUOTE_NONE))
    if path.suffix == ".txt":
        index = int(column or 0)
        texts = [r[index] for r in rows if len(r) > index]
    else:
        header, rows = rows[0], rows[1:]
        name = column or next((c for c in ("sentence", "text") if c in header), header[-1])
        texts = [r[header.index(name)] for r in rows if len(r) == len(header)]
    return texts[:limit] if limit else texts


def make_batches(tokenizer_dir: Path, texts: list[str], batch_size: int, max_length: int):
    """Length-sorted, per-batch padded int64 feeds (the Classifier's batching)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    enc = tok(texts, truncation=True, max_length=max_length)
    order = sorted(range(len(texts)), key=lambda i: len(enc["input_ids"][i]))
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(enc["input_ids"][i]) for i in idx)
        feeds = {}
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            pad = tok.pad_token_id if name == "input_ids" else 0
            array = np.full((len(idx), width), pad, np.int64)
            for row, i in enumerate(idx):
                values = enc[name][i] if name in enc else [0] * len(enc["input_ids"][i])
                array[row, :len(values)] = values
            feeds[name] = array
        batches.append(feeds)
    return batches


def interleaved(engines: dict, batches, rounds: int) -> tuple[dict, dict, dict]:
    """Run every engine on every batch, alternating engine order, `rounds` times. Returns
    ({engine: wall seconds}, {engine: CPU seconds}, {engine: outputs}), each time the sum over
    batches of that batch's fastest round. Interleaving and per-batch minima keep the ratios
    fair on a machine shared with other work; CPU time (one thread each) leaves out the waits
    for a core."""
    for run in engines.values():
        run(batches[len(batches) // 2])              # warm-up (first-call allocations)
    wall = {name: [float("inf")] * len(batches) for name in engines}
    cpu = {name: [float("inf")] * len(batches) for name in engines}
    outputs = {name: [None] * len(batches) for name in engines}
    names = list(engines)
    for r in range(rounds):
        for i, feeds in enumerate(batches):
            for name in names[r % len(names):] + names[:r % len(names)]:
                start, start_cpu = time.perf_counter(), time.process_time()
                out = engines[name](feeds)
                cpu[name][i] = min(cpu[name][i], time.process_time() - start_cpu)
                wall[name][i] = min(wall[name][i], time.perf_counter() - start)
                outputs[name][i] = out
    total = {name: sum(times) for name, times in wall.items()}
    total_cpu = {name: sum(times) for name, times in cpu.items()}
    return total, total_cpu, outputs


def matmul_peak() -> dict:
    """numpy float32 matmul GFLOP/s here: a square 1024 product and a BERT FFN-shaped one."""
    rng = np.random.default_rng(0)
    best = {}
    for m, k, n in ((1024, 1024, 1024), (1024, 384, 1536)):
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        a @ b
        times = []
        for _ in range(5):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        best[f"{m}x{k}x{n}"] = 2 * m * k * n / min(times) / 1e9
    return best


def count_flops(sess, batches) -> float:
    """Multiply-add FLOPs (2 per MAC) of the matmul-type ops over all batches, by shapes."""
    total = 0.0
    originals = {}

    def counting(step):
        fn = step.fn

        def run(*args, **kwargs):
            nonlocal total
            a = args[0]
            out = fn(*args, **kwargs)
            k = a.shape[-2] if step.node.op_type == "Gemm" and kwargs.get("transA") else a.shape[-1]
            total += 2.0 * out.size * k
            return out
        return run

    for step in sess._steps:
        if step.node.op_type in MATMUL_OPS:
            originals[id(step)] = step.fn
            step.fn = counting(step)
    try:
        for feeds in batches:
            sess.run(None, feeds)
    finally:
        for step in sess._steps:
            if id(step) in originals:
                step.fn = originals[id(step)]
    return total


def profile(sess, batches) -> dict:
    """CPU seconds per op type over all batches (one extra, instrumented pass)."""
    spent = defaultdict(float)
    originals = {}

    def timing(step):
        fn, op = step.fn, step.node.op_type

        def run(*args, **kwargs):
            t = time.process_time()
            out = fn(*args, **kwargs)
            spent[op] += time.process_time() - t
            return out
        return run

    for step in sess._steps:
        originals[id(step)] = step.fn
        step.fn = timing(step)
    try:
        start = time.process_time()
        for feeds in batches:
            sess.run(None, feeds)
        spent["(total)"] = time.process_time() - start
    finally:
        for step in sess._steps:
            step.fn = originals[id(step)]
    return dict(sorted(spent.items(), key=lambda kv: -kv[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", type=Path, help="bundle directory (model.onnx) or an .onnx file")
    ap.add_argument("--data", type=Path, default=DATA / "sst2" / "dev.tsv")
    ap.add_argument("--text-column", default=None)
    ap.add_argument("--tokenizer", type=Path, default=None, help="default: the model's folder")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--limit", type=int, default=None, help="only the first N texts")
    ap.add_argument("--reference-batches", type=int, default=2,
                    help="batches for the reference evaluator (0: skip it)")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds (per-batch minimum)")
    ap.add_argument("--profile", action="store_true", help="print time per op type")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)

    model_path = args.target / "model.onnx" if args.target.is_dir() else args.target
    texts = read_texts(args.data, args.text_column, args.limit)
    batches = make_batches(args.tokenizer or model_path.parent, texts, args.batch_size, args.max_length)
    n = len(texts)
    print(f"model {model_path} ({model_path.stat().st_size / 1e6:.1f} MB), {n} texts from "
          f"{args.data}, {len(batches)} batches of <= {args.batch_size}, one thread, "
          f"{args.rounds} interleaved rounds (each batch's fastest)")

    import onnxruntime as ort
    from runtime.session import Session

    start = time.perf_counter()
    sess = Session(str(model_path))
    load_s = time.perf_counter() - start
    int8 = any(s.node.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for s in sess._steps)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    ref_sess = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    seconds, cpu, outputs = interleaved({"numpy": lambda f: sess.run(None, f)[0],
                                         "onnxruntime": lambda f: ref_sess.run(None, f)[0]},
                                        batches, args.rounds)
    numpy_s, ort_s = seconds["numpy"], seconds["onnxruntime"]
    numpy_out, ort_out = outputs["numpy"], outputs["onnxruntime"]

    result = {"model": str(model_path), "int8": int8, "texts": n, "data": str(args.data),
              "batch_size": args.batch_size, "rounds": args.rounds, "numpy_version": np.__version__,
              "onnxruntime_version": ort.__version__, "numpy_load_s": load_s,
              "numpy_sentences_per_s": n / numpy_s, "ort_sentences_per_s": n / ort_s,
              "ratio_numpy_vs_ort": ort_s / numpy_s,
              "cpu_numpy_sentences_per_s": n / cpu["numpy"], "cpu_ort_sentences_per_s": n / cpu["onnxruntime"],
              "cpu_ratio_numpy_vs_ort": cpu["onnxruntime"] / cpu["numpy"]}
    a, b = np.concatenate(numpy_out), np.concatenate(ort_out)
    result["max_abs_logit_diff_vs_ort"] = float(np.abs(a - b).max())
    result["label_agreement_vs_ort"] = float((a.argmax(1) == b.argmax(1)).mean())

    print(f"numpy runtime : {n / numpy_s:8.1f} sentences/s  (load {load_s * 1000:.0f} ms)")
    print(f"onnxruntime   : {n / ort_s:8.1f} sentences/s")
    print(f"by CPU time   : numpy {n / cpu['numpy']:.1f}, onnxruntime {n / cpu['onnxruntime']:.1f} "
          f"sentences/s, ratio {cpu['onnxruntime'] / cpu['numpy']:.2f}x")
    print(f"ratio numpy/onnxruntime: {ort_s / numpy_s:.2f}x   max |logit diff| "
          f"{result['max_abs_logit_diff_vs_ort']:.2e}, label agreement "
          f"{result['label_agreement_vs_ort'] * 100:.2f}%")

    if args.reference_batches and not int8:
        from onnx.reference import ReferenceEvaluator

        ev = ReferenceEvaluator(str(model_path))
        step = max(1, len(batches) // args.reference_batches)
        subset = batches[step // 2::step][:args.reference_batches]
        count = sum(len(f["input_ids"]) for f in subset)
        start = time.perf_counter()
        for feeds in subset:
            ev.run(None, feeds)
        ref_s = time.perf_counter() - start
        numpy_sub = interleaved({"numpy": lambda f: sess.run(None, f)[0]}, subset, args.rounds)[0]["numpy"]
        result.update(reference_sentences_per_s=count / ref_s, reference_subset_sentences=count,
                      ratio_numpy_vs_reference_subset=ref_s / numpy_sub)
        print(f"reference     : {count / ref_s:8.1f} sentences/s  (measured on {len(subset)} evenly "
              f"spaced batches, {count} sentences, extrapolated; numpy runtime on the same batches "
              f"is {ref_s / numpy_sub:.0f}x faster)")
    elif int8:
        print("reference     : skipped (the reference evaluator cannot run these int8 graphs)")

    flops = count_flops(sess, batches)
    peak = matmul_peak()
    achieved = flops / numpy_s / 1e9
    result.update(matmul_gflop=flops / 1e9, achieved_gflops=achieved, numpy_matmul_peak_gflops=peak)
    best = max(peak.values())
    print(f"numpy runtime : {flops / 1e9:.1f} GFLOP of matmuls in {numpy_s:.2f} s = {achieved:.1f} "
          f"GFLOP/s, {achieved / best * 100:.0f}% of numpy's float32 matmul peak here "
          + ", ".join(f"{k}: {v:.1f}" for k, v in peak.items()))

    if args.profile:
        spent = profile(sess, batches)
        result["profile_s"] = spent
        total = spent["(total)"]
        print("CPU time per op type (instrumented pass):")
        for op, s in spent.items():
            print(f"  {op:24s} {s:7.3f} s  {s / total * 100:5.1f}%")

    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"runtime_{model_path.stem}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
