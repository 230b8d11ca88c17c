"""`distill eval`: one report for a model directory (torch) or an ONNX bundle."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from export.engines import is_bundle

from .data import DataOptions, load_labelled


class EvalError(Exception):
    """The thing to evaluate cannot be used."""


def model_labels(path) -> list[str]:
    """Label names in id order, from a bundle's runtime.json or a model's config.json."""
    path = Path(path)
    if is_bundle(path):
        return list(json.loads((path / "runtime.json").read_text(encoding="utf-8"))["labels"])
    config_file = path / "config.json"
    if not config_file.is_file():
        raise EvalError(f"{path}: neither a model directory (config.json) nor a bundle (runtime.json + model.onnx)")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    id2label = config.get("id2label") or {}
    return [id2label[str(i)] for i in range(len(id2label))]


def bundle_logits(path, texts, engine: str, batch_size: int, max_length: int | None) -> np.ndarray:
    from export.engines import bundle_predict_logits

    return bundle_predict_logits(path, texts, engine=engine, batch_size=batch_size, max_length=max_length)


def check_max_length(path, bundle: bool, max_length: int | None) -> None:
    """--max-length must fit the model: 2..the bundle's max_length, or 2..the model directory's
    position embeddings (longer inputs would index past them)."""
    if max_length is None:
        return
    if bundle:
        from export.engines import max_length_limit

        limit, reason = max_length_limit(path)
    else:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        limit, reason = int(config.get("max_position_embeddings", 512)), "the model's max_position_embeddings"
    if not 2 <= max_length <= limit:
        raise EvalError(f"--max-length {max_length}: must lie in 2..{limit} ({reason})")


def evaluate_path(path, data_path, options: DataOptions = DataOptions(), engine: str = "auto",
                  batch_size: int = 64, max_length: int | None = None) -> dict:
    """Evaluate a model directory or bundle on a labelled file: the DESIGN.md eval report.
    max_length (None: the model's training max_length, or the bundle's) cuts texts for every engine."""
    from .metrics import evaluate
    from .predict import ModelDirError, default_max_length, load_model_dir, predict_logits, softmax

    labels = model_labels(path)
    bundle = is_bundle(path)
    check_max_length(path, bundle, max_length)
    data = load_labelled(data_path, options, labels=labels)
    if engine == "auto":
        engine = "onnxruntime" if bundle else "torch"
    if bundle:
        if engine == "torch":
            raise EvalError(f"{path} is an ONNX bundle: use --engine onnxruntime or numpy")
        logits = bundle_logits(path, data.texts, engine, batch_size, max_length)
    else:
        if engine != "torch":
            raise EvalError(f"{path} is a model directory: --engine {engine} needs an ONNX bundle")
        try:
            model, tokenizer, _ = load_model_dir(path)
        except ModelDirError as error:
            raise EvalError(str(error)) from error
        length = max_length or default_max_length(path, tokenizer)
        logits = predict_logits(model, tokenizer, data.texts, length, batch_size, progress=True)
    report = evaluate(np.asarray(data.labels), softmax(logits), labels)
    report.update({"model": str(path), "data": str(data_path), "data_sha256": data.sha256,
                   "engine": engine, "skipped": data.skipped})
    return report
