"""`python -m export onnx MODEL_DIR --out BUNDLE [--int8]` (the same command as `distill export`)."""
from export.cli import export_group

if __name__ == "__main__":
    export_group(prog_name="python -m export")
