"""The fused GELU (runtime.fusion.GeluErf) at several erf block sizes, in one process.

The activation has the shape of a BERT feed-forward layer's (batch 32 x 25 tokens x 1536,
normal values of spread 2); each block size is timed best of `--repeat`, rounds interleaved so
that a busy machine slows every size alike. Prints ns per element and the speed relative to
the first size; the outputs of every size are checked bit-identical.
Run: .venv/bin/python bench/bench_gelu.py [--sizes 16384,32768,65536,131072,262144]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from runtime import fusion  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16384,32768,65536,131072,262144")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    x = (np.random.default_rng(0).standard_normal((32 * 25, 1536)) * 2).astype(np.float32)
    gelu = fusion.GeluErf("Div", np.array([np.sqrt(2)], np.float32), np.array([1.0], np.float32),
                          np.array([0.5], np.float32), "x*(a*h)")
    out, best, first = np.empty_like(x), {s: float("inf") for s in sizes}, None
    for _ in range(args.rounds):
        for size in sizes:
            fusion.ERF_BLOCK = size
            for _ in range(args.repeat):
                start = time.perf_counter()
                gelu(x, out=out)
                best[size] = min(best[size], time.perf_counter() - start)
            if first is None:
                first = out.copy()
            elif not np.array_equal(out, first):
                sys.exit(f"block {size}: output differs from block {sizes[0]}")
    print(f"{'block':>8} {'ns/element':>11} {'speed vs ' + str(sizes[0]):>16}")
    for size in sizes:
        print(f"{size:8d} {best[size] / x.size * 1e9:11.2f} {best[sizes[0]] / best[size]:15.2f}x")


if __name__ == "__main__":
    main()
