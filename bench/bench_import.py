"""How much `import runtime` adds over `import numpy` (issue 5: at most 50 ms).

Two measures over fresh interpreters, minimum and median of --runs each:
- wall time of `python -c "import numpy; import runtime"` minus `python -c "import numpy"`;
- `-X importtime`'s cumulative time of the `runtime` package imported after numpy
  (everything runtime pulls in beyond numpy: tokenizer, classifier, json, unicodedata, ...).
The minimum is the figure on an idle machine; the median shows the noise of a shared one.
With --bundle DIR (repeatable) it also times `Classifier.load(DIR)` in fresh interpreters
(after `import runtime`; issue 5: under 1 s for the int8 SST-2 bundle), split into reading
model.onnx and building the Session.
Run: .venv/bin/python bench/bench_import.py [--runs 21] [--bundle models/sst2-student-int8]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# with bytecode caching, as after `pip install` (kept out of the repo in a temporary prefix);
# PYTHONDONTWRITEBYTECODE would make every run compile the sources again
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV.update(PYTHONPATH=str(ROOT), PYTHONPYCACHEPREFIX=tempfile.mkdtemp(prefix="bench-import-pycache-"))


def wall_ms(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV, cwd=ROOT)
    return (time.perf_counter() - start) * 1000


def importtime_ms(code: str, module: str) -> float:
    """Cumulative import time of `module` as -X importtime reports it."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", code], check=True, env=ENV,
                         cwd=ROOT, capture_output=True, text=True).stderr
    for line in err.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1000
    raise RuntimeError(f"{module} not in -X importtime output")


LOAD = """
import time, runtime, runtime.session, runtime.onnx
t0 = time.perf_counter()
clf = runtime.Classifier.load({bundle!r})
t1 = time.perf_counter()
runtime.onnx.load({model!r})
t2 = time.perf_counter()
print((t1 - t0) * 1000, (t2 - t1) * 1000)
"""


def load_ms(bundle: Path) -> tuple:
    """(Classifier.load ms, runtime.onnx.load ms of model.onnx) in a fresh interpreter."""
    code = LOAD.format(bundle=str(bundle), model=str(bundle / "model.onnx"))
    out = subprocess.run([sys.executable, "-c", code], check=True, env=ENV, cwd=ROOT,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def summary(values) -> str:
    return f"min {min(values):6.1f} ms  median {statistics.median(values):6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--bundle", type=Path, action="append", default=[],
                        help="also time Classifier.load of this bundle")
    args = parser.parse_args()
    runs = args.runs
    wall_ms("import numpy, runtime, runtime.session")  # warm the file cache, write .pyc files
    numpy, both, added, session = [], [], [], []
    for _ in range(runs):  # interleaved, so load changes hit both sides alike
        numpy.append(wall_ms("import numpy"))
        both.append(wall_ms("import numpy; import runtime"))
        added.append(importtime_ms("import numpy; import runtime", "runtime"))
        session.append(importtime_ms("import numpy; import runtime.session", "runtime.session"))
    diff = [b - n for b, n in zip(both, numpy)]
    print(f"wall  python -c 'import numpy':                 {summary(numpy)}")
    print(f"wall  python -c 'import numpy; import runtime': {summary(both)}")
    print(f"wall  difference (runtime over numpy):          {summary(diff)}")
    print(f"-X importtime: runtime after numpy:             {summary(added)}")
    print(f"-X importtime: runtime.session (lazy, on load): {summary(session)}")
    for bundle in args.bundle:
        times = [load_ms(bundle.resolve()) for _ in range(max(3, runs // 3))]
        size = (bundle / "model.onnx").stat().st_size / 1e6
        print(f"Classifier.load({bundle}) ({size:.1f} MB model.onnx): "
              f"{summary([t[0] for t in times])}; of which reading model.onnx alone "
              f"{summary([t[1] for t in times])}")
    shutil.rmtree(ENV["PYTHONPYCACHEPREFIX"], ignore_errors=True)
    print(f"{runs} fresh interpreters per row; limit: import runtime adds at most 50 ms; "
          f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
