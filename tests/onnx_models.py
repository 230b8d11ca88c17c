"""Tiny exported ONNX classifiers for the runtime tests, built once per test process.

`exported_models(root)` returns {name: path}: "fp32" (export/'s dynamo exporter, opset 18),
"int8" (quantize_dynamic, qint8 weights), "int8_quint8_pc" (quint8, per-channel) and
"ts17" (the TorchScript exporter at opset 17, whose graphs are full of Constant nodes with
tensor attributes, Unsqueeze, Where and friends: more reader and op coverage). Later calls in
the same process return the first set, whatever root they pass.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from tiny import make_tiny_model

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_CACHE: dict = {}


def exported_models(root: Path) -> dict:
    if "models" in _CACHE:
        return _CACHE["models"]
    import torch

    from export.onnx_export import export_fp32, load_classifier
    from export.quantize import quantize_int8

    root = Path(root)
    model_dir = make_tiny_model(root / "model", layers=2, hidden=32, seed=3)
    model, _, _ = load_classifier(model_dir)
    paths = {name: root / f"{name}.onnx" for name in ("fp32", "int8", "int8_quint8_pc", "ts17")}
    export_fp32(model, paths["fp32"])
    quantize_int8(paths["fp32"], paths["int8"], weight_type="qint8")
    quantize_int8(paths["fp32"], paths["int8_quint8_pc"], weight_type="quint8", per_channel=True)
    example = tuple(torch.ones(2, 5, dtype=torch.long) for _ in INPUTS)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.set_attn_implementation("eager")
        torch.onnx.export(model, example, str(paths["ts17"]), dynamo=False, opset_version=17,
                          input_names=list(INPUTS), output_names=["logits"], dynamic_axes=axes)
    _CACHE["models"] = paths
    return paths


def random_feeds(rng: np.random.Generator, batch: int, length: int, vocab: int = 300) -> dict:
    """Token ids with ragged padding (row 0 full, others cut at random lengths)."""
    ids = rng.integers(5, vocab, (batch, length)).astype(np.int64)
    mask = np.ones((batch, length), np.int64)
    for row in range(1, batch):
        mask[row, rng.integers(1, length + 1):] = 0
    ids[mask == 0] = 0
    types = np.zeros((batch, length), np.int64)
    types[:, length // 2:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types * mask}
