"""torch -> ONNX: one self-contained file of standard ai.onnx ops, dynamic batch and sequence.

Exporter: `torch.onnx.export(dynamo=True)` (torch.export + the onnxscript optimizer). Measured
on a 2-layer BERT classifier (torch 2.13, opset 18): 87 nodes and nothing but ai.onnx ops,
against 192 nodes (53 Constant, 20 Identity, 19 Unsqueeze) from the TorchScript exporter; the
dynamo exporter is also the maintained one. It is slower (~10 s for a tiny model), which only
the export pays.

Two choices keep the graph small and plain:
- attention runs in transformers' "eager" implementation (MatMul, Softmax): the SDPA path
  traces into extra IsNaN/Where guards;
- the 2-D attention_mask becomes the additive (batch, 1, 1, seq) bias here, which transformers
  passes through as an already-prepared 4-D mask. Its own mask utilities trace into ~20 nodes
  (Range, GatherND, And, Max, Expand...) that compute the same thing.
The parity check in validate.py compares the result with the unmodified torch model.

Opset 18 by default: LayerNormalization is a single op (>= 17) and GELU stays Erf-based (the
Gelu op needs opset 20, which older runtimes lack).
"""
from __future__ import annotations

import os
from pathlib import Path

from export import ExportError

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 18
MIN_OPSET = 18            # the dynamo exporter's torchlib targets opset 18 and later
PROTOBUF_LIMIT = 2 ** 31  # a single .onnx file cannot hold more


def max_opset() -> int:
    """The highest ai.onnx opset torch.onnx.export(dynamo=True) can produce with the installed
    libraries (25 with onnxscript 0.7), capped by the opsets onnx knows (its checker runs too).

    The exporter builds opset-18 graphs and onnxscript's version converter lifts them to the
    requested opset. Past the converter's range onnx's C converter takes over, has no adapter for
    Gelu, and the export fails after tracing ('No Op registered for Gelu with domain_version of
    18'). No public API states that range, so the converter's own bound is read; the opset modules
    onnxscript ships are no guide (up to 27 in 0.7, and 26 fails). Without the bound, only
    MIN_OPSET is known to need no conversion."""
    import onnx

    try:
        from onnxscript.version_converter import _version_converter
        converter_max = int(_version_converter.SUPPORTED_MAX_ONNX_OPSET)
    except (ImportError, AttributeError):
        converter_max = MIN_OPSET
    return min(converter_max, onnx.defs.onnx_opset_version())


def opset_problem(opset: int) -> str | None:
    """Why the installed exporter cannot produce `opset` ('must lie in 18..25 (...)'), or None."""
    from importlib import metadata

    newest = max_opset()
    if MIN_OPSET <= opset <= newest:
        return None
    try:
        onnxscript = f"onnxscript {metadata.version('onnxscript')}"
    except metadata.PackageNotFoundError:
        onnxscript = "onnxscript"
    return (f"must lie in {MIN_OPSET}..{newest} (torch.onnx.export builds opset {MIN_OPSET} graphs "
            f"and {onnxscript} converts them up to opset {newest})")


def load_classifier(model_dir):
    """(model in eval mode, tokenizer, label names in id order) or ExportError.

    Only a directory whose config.json names a *ForSequenceClassification architecture is
    accepted: AutoModelForSequenceClassification would happily load a masked-LM checkpoint
    with a freshly initialised (random) classifier head."""
    from distill.model_checks import check_architecture, check_tokenizer, nonfinite_weights
    from distill.predict import ModelDirError, load_model_dir

    path = Path(model_dir)
    if not path.is_dir():
        raise ExportError(f"{path}: model directory not found")
    try:
        model, tokenizer, labels = load_model_dir(path)
    except ModelDirError as error:
        raise ExportError(str(error)) from error
    except (OSError, ValueError) as error:
        raise ExportError(f"{path}: cannot load the model or its tokenizer: {error}") from error
    check_architecture(model.config, str(path), ExportError)     # the bundle feeds token_type_ids
    check_tokenizer(tokenizer, model.config, str(path), ExportError)
    bad = nonfinite_weights(model)
    if bad:
        raise ExportError(f"{path}: {bad:,} weights are NaN or infinite (a training run that diverged?); "
                          "nothing to export")
    return model, tokenizer, labels


def logits_module(model):
    """Wrap a sequence classifier: (input_ids, attention_mask, token_type_ids) -> logits,
    with the padding mask turned into the additive attention bias transformers expects."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, classifier):
            super().__init__()
            self.classifier = classifier

        def forward(self, input_ids, attention_mask, token_type_ids):
            dtype = self.classifier.dtype
            keep = attention_mask[:, None, None, :].to(dtype)            # (B, 1, 1, T)
            bias = (1.0 - keep) * torch.finfo(dtype).min                 # 0 or -max: masked keys
            return self.classifier(input_ids=input_ids, attention_mask=bias,
                                   token_type_ids=token_type_ids).logits  # (B, n_labels)

    return LogitsOnly(model).eval()


def export_fp32(model, path, opset: int = DEFAULT_OPSET) -> dict:
    """Export `model` (a loaded sequence classifier) to the single file `path`; returns the
    exporter settings for export.json. The model is switched to eager attention."""
    import logging
    import warnings

    import onnx
    import torch
    from torch.export import Dim

    problem = opset_problem(opset)
    if problem:
        raise ExportError(f"--opset {opset}: {problem}")
    model.set_attn_implementation("eager")
    max_positions = int(getattr(model.config, "max_position_embeddings", 512))
    seq = min(8, max_positions)
    input_ids = torch.full((2, seq), 100 % model.config.vocab_size, dtype=torch.int64)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, seq // 2:] = 0
    token_type_ids = torch.zeros_like(input_ids)
    batch_dim, seq_dim = Dim("batch"), Dim("sequence", max=max_positions)
    axes = {0: batch_dim, 1: seq_dim}

    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" notices
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                logits_module(model), (input_ids, attention_mask, token_type_ids),
                dynamo=True, opset_version=opset, optimize=True, verbose=False,
                input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                dynamic_shapes=(axes, axes, axes))
    except Exception as error:  # torch.export raises many types; say which step failed
        raise ExportError(f"torch.onnx.export failed: {type(error).__name__}: {error}") from error
    finally:
        quiet.setLevel(level)
    if program.model_proto.ByteSize() >= PROTOBUF_LIMIT:
        raise ExportError("the model is 2 GB or larger: it cannot be one self-contained .onnx file")
    program.save(str(path), external_data=False)
    inlined = inline_external_data(path)
    stripped = strip_export_metadata(path)
    onnx.checker.check_model(str(path), full_check=True)
    return {"exporter": "torch.onnx.export", "dynamo": True, "opset": opset,
            "optimize": True, "attention": "eager", "mask": "additive 4-D bias",
            "dynamic_axes": {name: {"0": "batch", "1": "sequence"} for name in INPUT_NAMES}
            | {OUTPUT_NAME: {"0": "batch"}},
            "reinlined_external_data": inlined, "stripped_metadata_entries": stripped}


def strip_export_metadata(path) -> int:
    """Remove the exporter's per-node and per-value `metadata_props` (Python stack traces with the
    exporting machine's absolute paths, FX node text, class hierarchies) and re-save. They leak
    the build machine's directories into a shipped file, make the bytes depend on where the
    export ran, and on a small model are over half its size; nothing reads them. Returns how
    many entries were removed."""
    import onnx

    model = onnx.load(str(path))
    removed = 0

    def strip(graph) -> None:
        nonlocal removed
        for item in [*graph.node, *graph.input, *graph.output, *graph.value_info, *graph.initializer]:
            removed += len(item.metadata_props)
            del item.metadata_props[:]
        for node in graph.node:
            for attribute in node.attribute:
                for sub in [attribute.g, *attribute.graphs]:
                    strip(sub)

    strip(model.graph)
    onnx.save_model(model, str(path), save_as_external_data=False)
    return removed


def inline_external_data(path) -> bool:
    """If the saved model keeps any tensor in a side file, re-save it as one file (and delete
    the side files). Returns whether it had to."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    path = Path(path)
    skeleton = onnx.load(str(path), load_external_data=False)
    tensors = [t for t in skeleton.graph.initializer if uses_external_data(t)]
    if not tensors:
        return False
    side_files = {dict((e.key, e.value) for e in t.external_data)["location"] for t in tensors}
    model = onnx.load(str(path), load_external_data=True)
    onnx.save_model(model, str(path), save_as_external_data=False)
    for name in side_files:
        side = path.parent / name
        if side.resolve() != path.resolve() and side.exists():
            os.remove(side)
    return True
