"""Batched torch inference on a model directory: the one path every report uses."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports (a classifier's head keys are expected to go unused)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def silence_transformers() -> None:
    """--quiet: no progress bars (loading weights, writing shards) and no log lines (load reports,
    checkpoint-ordering warnings) from transformers, for the rest of the process."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


class ModelDirError(Exception):
    """Not a usable sequence-classification model directory."""


def default_max_length(model_dir, tokenizer) -> int:
    """The max_length the model was trained with (training.json), else the tokenizer's, capped at
    512 and at the model's position table (config.json max_position_embeddings)."""
    report = Path(model_dir) / "training.json"
    if report.exists():
        length = json.loads(report.read_text(encoding="utf-8")).get("config", {}).get("max_length")
        if length:
            return int(length)
    config = Path(model_dir) / "config.json"
    positions = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings") \
        if config.exists() else None
    return int(min(getattr(tokenizer, "model_max_length", 512) or 512, 512, positions or 512))


def is_sequence_classifier(architectures) -> bool:
    """config.json's `architectures` name a *ForSequenceClassification class."""
    return any(str(a).endswith("ForSequenceClassification") for a in (architectures or []))


def weight_file_errors() -> tuple[type, ...]:
    """What a damaged weights file raises (a truncated model.safetensors: SafetensorError)."""
    from safetensors import SafetensorError

    return (SafetensorError,)


def load_model_dir(model_dir):
    """(model in eval mode, tokenizer, label names in id order) from a save_pretrained directory."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from .tokenization import load_tokenizer

    path = Path(model_dir)
    if (path / "runtime.json").is_file():      # a bundle carries config.json too, but no weights
        raise ModelDirError(f"{path}: an edge bundle (runtime.json), not a model directory: give the "
                            "directory `teach` or `student` wrote")
    if not (path / "config.json").is_file():
        raise ModelDirError(f"{path}: not a model directory (no config.json)")
    config = AutoConfig.from_pretrained(path)
    if not is_sequence_classifier(config.architectures):
        raise ModelDirError(f"{path}: not a sequence classifier (architectures: {config.architectures})")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    except (OSError, ValueError, *weight_file_errors()) as error:
        raise ModelDirError(f"{path}: cannot load its weights ({str(error).splitlines()[0]})") from None
    try:
        tokenizer = load_tokenizer(path)
    except OSError as error:
        raise ModelDirError(str(error).splitlines()[0]) from None
    labels = [config.id2label[i] for i in range(config.num_labels)]
    return model, tokenizer, labels


def encode(tokenizer, texts, max_length: int, progress: bool = False):
    """Tokenize without padding: rows[i] is text i's dict of id lists (token_rows.TokenRows)."""
    from .token_rows import tokenize_rows

    return tokenize_rows(tokenizer, texts, max_length, progress=progress)


def length_sorted_batches(lengths, batch_size: int):
    """Index batches of similar length, so little padding is computed: shortest first, ties in
    input order, as runtime.Classifier makes them (int8 bundles quantize activations per batch,
    so onnxruntime and the numpy runtime agree only on the same batches)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def predict_logits(model, tokenizer, texts, max_length: int, batch_size: int = 64,
                   progress: bool = False, sort: bool = True) -> np.ndarray:
    """Logits (n, n_labels) float32 in input order; no grad, dynamic padding per batch. Batches
    hold texts of similar length (sort=True) or consecutive texts (sort=False, what a plain
    Hugging Face loop does)."""
    import torch
    from tqdm.auto import tqdm

    rows = encode(tokenizer, texts, max_length, progress=progress)
    out = np.zeros((len(rows), model.config.num_labels), dtype=np.float32)
    if sort:
        batches = length_sorted_batches(rows.lengths(), batch_size)
    else:
        batches = [np.arange(i, min(i + batch_size, len(rows))) for i in range(0, len(rows), batch_size)]
    model.eval()
    device = model_device(model)
    with torch.inference_mode():
        for idx in tqdm(batches, desc="predict", unit="batch", disable=not progress):
            batch = tokenizer.pad([rows[i] for i in idx], return_tensors="pt").to(device)
            out[idx] = model(**batch).logits.float().cpu().numpy()
    return out


def model_device(model):
    """Where the model's weights are: the Trainer moves a model it trained to the accelerator it
    finds (CUDA, Apple's MPS), and inputs must follow it there."""
    return next(model.parameters()).device


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
