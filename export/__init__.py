"""distill-edge export: a model directory -> a validated ONNX edge bundle (DESIGN.md).

    python -m export onnx MODEL_DIR --out BUNDLE [--int8] [--eval FILE]
    distill export onnx MODEL_DIR --out BUNDLE [--int8]     # the same command

Modules: onnx_export (torch -> one self-contained fp32 .onnx), quantize (int8 dynamic),
validate (parity, accuracy, op census), bundle (runtime.json, files, atomic write),
engines (run a bundle with onnxruntime or the numpy runtime), cli (the click group).

With --int8 the bundle's model.onnx is the int8 graph and the fp32 graph is not kept:
an edge bundle holds the one model the runtime runs (export.json still records the fp32
file's size, parity and accuracy). Export without --int8 for an fp32 bundle.
"""


class ExportError(Exception):
    """An export that cannot start or that failed a check; nothing is written to --out."""
