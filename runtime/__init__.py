"""distill-edge runtime: classify text with an edge bundle using numpy and the standard library.

    from runtime import Classifier
    clf = Classifier.load("models/demo/student-int8")   # made by `make demo`
    clf.predict(["a gripping film"])          # -> ["positive"]

`Session` (the numpy ONNX executor) is imported on first use, so `import runtime` stays cheap.
"""
from __future__ import annotations

from .classifier import BundleError, Classifier
from .protobuf import ModelError

__all__ = ["BundleError", "Classifier", "ModelError", "Session"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Session":
        from .session import Session
        return Session
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
