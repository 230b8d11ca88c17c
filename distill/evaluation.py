"""`distill eval`: one report for a model directory (torch) or an ONNX bundle."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from export.engines import is_bundle

from .cache import WEIGHT_FILES
from .data import DataOptions, load_labelled
from .predict import is_sequence_classifier


class EvalError(Exception):
    """The thing to evaluate cannot be used."""


def _read_json(file: Path):
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EvalError(f"{file}: not valid JSON: {error}") from None


def _runtime_config(bundle: Path) -> dict:
    """runtime.json, checked as the numpy runtime checks it, so no field is missing later."""
    from runtime import BundleError
    from runtime.classifier import check_runtime_config

    file = bundle / "runtime.json"
    config = _read_json(file)
    if not isinstance(config, dict):
        raise EvalError(f"{file}: expected a JSON object")
    try:
        check_runtime_config(config, str(file))
    except BundleError as error:
        raise EvalError(str(error)) from None
    return config


def model_labels(path) -> list[str]:
    """Label names in id order, from a bundle's runtime.json or a model's config.json."""
    path = Path(path)
    has_runtime_json, has_onnx = (path / "runtime.json").is_file(), (path / "model.onnx").is_file()
    weights = any(p for pattern in WEIGHT_FILES for p in path.glob(pattern))
    # a bundle's copied config.json made a damaged bundle look like a model directory; a model
    # directory with an ONNX file put beside its weights is still a model directory
    if has_runtime_json != has_onnx and (has_runtime_json or not weights):
        missing, there = ("model.onnx", "runtime.json") if has_runtime_json else ("runtime.json", "model.onnx")
        raise EvalError(f"{path}: an edge bundle without {missing} ({there} is there): incomplete; "
                        "export it again")
    if is_bundle(path):
        return list(_runtime_config(path)["labels"])
    config_file = path / "config.json"
    if not config_file.is_file():
        raise EvalError(f"{path}: neither a model directory (config.json) nor a bundle (runtime.json + model.onnx)")
    config = _read_json(config_file)
    if not is_sequence_classifier(config.get("architectures")):
        raise EvalError(f"{path}: not a sequence classifier (architectures: {config.get('architectures')})")
    id2label = config.get("id2label") or {}
    return [id2label[str(i)] for i in range(len(id2label))]


def _onnxruntime_errors() -> tuple[type, ...]:
    """What onnxruntime raises for a model.onnx it cannot load (a truncated file:
    InvalidProtobuf; an empty one: InvalidArgument)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    return tuple(getattr(ort_errors, name) for name in ("Fail", "InvalidArgument", "InvalidGraph",
                                                         "InvalidProtobuf", "NoSuchFile", "NotImplemented"))


def _onnxruntime_reason(error: Exception) -> str:
    """'[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from X failed:Protobuf parsing
    failed.' -> 'Protobuf parsing failed.' (the caller names the file)."""
    reason = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", str(error))
    return re.sub(r"^Load model from .* failed:\s*", "", reason)


def bundle_logits(path, texts, engine: str, batch_size: int, max_length: int | None,
                  progress: bool = False) -> np.ndarray:
    """A damaged bundle file is an EvalError naming it: the numpy runtime's documented errors
    (which name the file), or onnxruntime's load errors."""
    from export.engines import bundle_predict_logits
    from runtime import BundleError
    from runtime.onnx import ModelError

    try:
        return bundle_predict_logits(path, texts, engine=engine, batch_size=batch_size, max_length=max_length,
                                     progress=progress)
    except (BundleError, ModelError, FileNotFoundError) as error:
        raise EvalError(str(error)) from None
    except _onnxruntime_errors() as error:
        raise EvalError(f"{Path(path) / 'model.onnx'}: {_onnxruntime_reason(error)}") from None


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


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links, case-insensitive disks


# What a model directory or bundle is made of: an eval output may sit beside them, not replace one.
MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "vocab.txt", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "training.json",
               "runtime.json", "model.onnx", "export.json")


def check_outputs(data_path, outputs: dict, model=None) -> None:
    """Refuse, before anything is evaluated, an output ({option: path or None}) that would
    overwrite --data, another output or one of the model's files, or whose folder cannot be made.
    Creates nothing: the missing parent folders are made when the output is written (make_parent)."""
    from .savedir import check_writable_target

    taken = [("--data", Path(data_path))]
    if model is not None and Path(model).is_dir():
        taken += [("the model's file", Path(model) / name) for name in MODEL_FILES if (Path(model) / name).exists()]
    for option, out in outputs.items():
        if out is None:
            continue
        for other, path in taken:
            if _same_file(Path(out), path):
                raise EvalError(f"{option} {out} is the same file as {other} {path}: choose another path")
        taken.append((option, Path(out)))
        try:
            check_writable_target(out, force=True)  # force: an existing report is replaced
        except (NotADirectoryError, PermissionError) as error:
            raise EvalError(f"{option}: {error}") from None


def make_parent(path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)


def evaluate_path(path, data_path, options: DataOptions = DataOptions(), engine: str = "auto",
                  batch_size: int = 32, max_length: int | None = None, progress: bool = True) -> dict:
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
        logits = bundle_logits(path, data.texts, engine, batch_size, max_length, progress=progress)
    else:
        if engine != "torch":
            raise EvalError(f"{path} is a model directory: --engine {engine} needs an ONNX bundle")
        try:
            model, tokenizer, _ = load_model_dir(path)
        except ModelDirError as error:
            raise EvalError(str(error)) from error
        length = max_length or default_max_length(path, tokenizer)
        logits = predict_logits(model, tokenizer, data.texts, length, batch_size, progress=progress)
    report = evaluate(np.asarray(data.labels), softmax(logits), labels)
    report.update({"model": str(path), "data": str(data_path), "data_sha256": data.sha256,
                   "engine": engine, "skipped": data.skipped})
    return report
