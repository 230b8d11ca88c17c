"""What the edge bundle needs of a checkpoint, checked before any training: the export feeds
input_ids, attention_mask and token_type_ids, and the runtime reads BERT WordPiece tokenizers
whose special tokens are in the vocabulary. A DistilBERT or RoBERTa checkpoint, or a vocabulary
without [SEP], used to train a teacher and a student and fail only at export (or mid-training,
with an IndexError)."""
from __future__ import annotations

import inspect
import json
from pathlib import Path

SPECIAL_TOKENS = ("cls_token", "sep_token", "pad_token", "unk_token")


def check_architecture(config, source: str, error) -> None:
    """The checkpoint's sequence classifier takes token_type_ids (BERT-family); `error` if not."""
    from transformers import AutoModelForSequenceClassification

    try:
        model_class = AutoModelForSequenceClassification._model_mapping[type(config)]
    except KeyError:
        raise error(f"{source}: transformers has no sequence classifier for model type "
                    f"{config.model_type!r}") from None
    if "token_type_ids" not in inspect.signature(model_class.forward).parameters:
        raise error(f"{source}: a {config.model_type} model ({model_class.__name__}) takes no "
                    "token_type_ids; the edge bundle feeds input_ids, attention_mask and "
                    "token_type_ids, as BERT-family models (bert, electra) read them")


def nonfinite_weights(model) -> int:
    """How many of the model's weights are NaN or infinite (a training run that diverged)."""
    import torch

    return sum(int((~torch.isfinite(p)).sum()) for p in model.parameters())


def wordpiece_vocab(tokenizer) -> dict:
    """{token: id} of the tokenizer's own vocabulary (vocab.txt), without added tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return json.loads(backend.to_str())["model"].get("vocab") or {}
    return dict(getattr(tokenizer, "vocab", {}))


def check_tokenizer(tokenizer, config, source: str, error) -> None:
    """A BERT WordPiece tokenizer the runtime can read, whose special tokens and ids all lie in
    the vocabulary the model's embeddings cover; `error` naming what is missing if not."""
    from export import ExportError
    from export.bundle import tokenizer_settings

    try:
        tokenizer_settings(tokenizer)
    except ExportError as problem:
        raise error(f"{source}: {problem}") from None
    vocab = wordpiece_vocab(tokenizer)
    for key in SPECIAL_TOKENS:
        token = getattr(tokenizer, key, None)
        if token is None or str(token) not in vocab:
            what = key if token is None else f"{key} {str(token)!r}"
            raise error(f"{source}: the vocabulary (vocab.txt) has no {what}, which every BERT input needs")
    rows = getattr(config, "vocab_size", None)
    if rows is not None and vocab and max(vocab.values()) >= rows:
        raise error(f"{source}: the vocabulary (vocab.txt) has ids up to {max(vocab.values())}, but the "
                    f"model's embeddings have {rows} rows (config.json vocab_size)")


def check_checkpoint(source: str, config, error) -> None:
    """check_architecture and check_tokenizer on a checkpoint given by path (or cached hub id),
    loading its tokenizer only (the weights load later, once the data has been read)."""
    from .tokenization import load_tokenizer

    check_architecture(config, source, error)
    try:
        tokenizer = load_tokenizer(source)
    except (OSError, ValueError) as problem:
        detail = str(problem).splitlines()[0]
        raise error(detail if detail.startswith(f"{Path(source)}: ") else      # already names it
                    f"{source}: cannot load its tokenizer ({detail})") from None
    check_tokenizer(tokenizer, config, source, error)
