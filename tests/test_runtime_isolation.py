"""runtime/ on its own: no heavy imports, works copied into an app, builds a numpy-only wheel."""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from test_classifier import TEXTS, tiny_bundle

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "runtime"
BLOCKED = ("torch", "transformers", "onnx", "onnxruntime", "google.protobuf", "click", "scipy")

# Runs in a fresh interpreter: refuse the heavy packages, prove they are refused, then
# classify with the runtime and report where it came from and what got imported.
SCRIPT = r"""
import json, sys
BLOCKED = %(blocked)r

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"{name} is refused in this test")
        return None

sys.meta_path.insert(0, Refuse())
refused = []
for name in BLOCKED:
    try:
        __import__(name)
    except ImportError:
        refused.append(name)

import runtime
from runtime import Classifier

clf = Classifier.load(sys.argv[1])
texts = json.loads(sys.argv[2])
json.dump({
    "refused": refused,
    "runtime_file": runtime.__file__,
    "proba": clf.predict_proba(texts).tolist(),
    "labels": clf.predict(texts),
    "modules": sorted({name.split(".")[0] for name in sys.modules}),
}, sys.stdout)
"""


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle(int8=True)  # the int8 graph exercises the most runtime code


@pytest.fixture(scope="module")
def expected(bundle):
    from runtime import Classifier
    clf = Classifier.load(bundle)
    return clf.predict_proba(TEXTS), clf.predict(TEXTS)


def run_isolated(bundle, pythonpath, cwd) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(pythonpath)
    result = subprocess.run([sys.executable, "-c", SCRIPT % {"blocked": BLOCKED}, str(bundle),
                             json.dumps(TEXTS)], capture_output=True, text=True, cwd=cwd, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def check_isolated_run(report, expected, runtime_dir: Path):
    proba, labels = expected
    assert report["refused"] == list(BLOCKED)  # the blocker works, so the run below proves something
    assert Path(report["runtime_file"]).resolve().parent == runtime_dir.resolve()
    assert np.array_equal(np.array(report["proba"], dtype=np.float32), proba)
    assert report["labels"] == labels
    heavy = {"torch", "transformers", "onnx", "onnxruntime", "click", "scipy", "tokenizers"}
    assert not heavy & set(report["modules"])
    outside = set(report["modules"]) - set(sys.stdlib_module_names) - {"numpy", "runtime", "google"}
    assert not {m for m in outside if not m.startswith("_")}, outside  # numpy and stdlib only


def test_import_and_predict_without_heavy_packages(bundle, expected, tmp_path):
    report = run_isolated(bundle, pythonpath=ROOT, cwd=tmp_path)
    check_isolated_run(report, expected, RUNTIME)


def copy_runtime(dest: Path) -> Path:
    return Path(shutil.copytree(RUNTIME, dest, ignore=shutil.ignore_patterns(
        "__pycache__", "build", "*.egg-info")))


def test_works_copied_into_an_app(bundle, expected, tmp_path):
    app = tmp_path / "app"
    copy = copy_runtime(app / "runtime")
    report = run_isolated(bundle, pythonpath=app, cwd=app)
    check_isolated_run(report, expected, copy)


def test_wheel_requires_numpy_only_and_installs_alone(bundle, expected, tmp_path):
    source = copy_runtime(tmp_path / "src" / "runtime")  # build outside the repo: no build/ litter
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--no-index", "-q", "-w", str(wheels), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    modules = sorted(n for n in names if not n.split("/")[0].endswith(".dist-info"))
    assert modules == sorted(f"runtime/{p.name}" for p in RUNTIME.glob("*.py"))
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")]
    assert [r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requires] == ["numpy"]
    assert "Requires-Python: >=3.9" in metadata

    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                              "--target", str(site), str(wheel)], capture_output=True, text=True,
                             timeout=300)
    assert install.returncode == 0, install.stderr
    report = run_isolated(bundle, pythonpath=site, cwd=tmp_path)
    check_isolated_run(report, expected, site / "runtime")


def test_sources_parse_as_python_3_9():
    """No match statements, parenthesised context managers or other post-3.9 syntax, and
    postponed annotations everywhere (so `X | None` hints never run on 3.9)."""
    for path in sorted(RUNTIME.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
        if tree.body and any(isinstance(node, (ast.FunctionDef, ast.ClassDef)) for node in tree.body):
            futures = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
            assert any(a.name == "annotations" for n in futures for a in n.names), \
                f"{path.name}: add `from __future__ import annotations`"
