"""The Hugging Face tokenizer as distill trains, scores and exports with: the model's own, made to
compose characters (NFC) where the numpy runtime does.

transformers 5's `BertTokenizer` is the Rust one, whose BertNormalizer never applies NFC; the
runtime follows the Python BasicTokenizer, which does. With lower-casing or accent stripping the
two agree anyway (both decompose to NFD and drop the marks), but a cased vocabulary that keeps
accents would see `e` + U+0301 as two characters in training and as `é` in the runtime: another
token, and another prediction. So a tokenizer that keeps accents gets NFC after its
BertNormalizer (the Python order: clean, space CJK, then NFC) every time it is loaded;
transformers 5 rebuilds the normalizer from its settings on load, so nothing saved carries it.
"""
from __future__ import annotations

import json


def _normalizer_state(tokenizer) -> dict | None:
    """The fast backend's normalizer as a dict; None for a Python tokenizer or no normalizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    normalizer = backend.normalizer if backend is not None else None
    return json.loads(normalizer.__getstate__()) if normalizer is not None else None


def bert_normalizer(tokenizer) -> dict | None:
    """The settings of the tokenizer's BertNormalizer (also inside the NFC sequence that
    `like_runtime` makes); None for a Python tokenizer or another normalizer."""
    state = _normalizer_state(tokenizer)
    if state and state.get("type") == "Sequence":
        parts = state.get("normalizers") or []
        if len(parts) == 2 and parts[1].get("type") == "NFC":
            state = parts[0]
    return state if state and state.get("type") == "BertNormalizer" else None


def keeps_accents(settings: dict) -> bool:
    """BertNormalizer keeps accents unless strip_accents, or (strip_accents unset) lowercase."""
    strip = settings.get("strip_accents")
    return strip is False or (strip is None and not settings.get("lowercase", True))


def like_runtime(tokenizer):
    """The tokenizer, in place, with NFC after its BertNormalizer when that keeps accents."""
    from tokenizers import normalizers

    state = _normalizer_state(tokenizer)
    if state and state.get("type") == "BertNormalizer" and keeps_accents(state):
        backend = tokenizer.backend_tokenizer
        backend.normalizer = normalizers.Sequence([backend.normalizer, normalizers.NFC()])
    return tokenizer


VOCABULARY_FILES = ("vocab.txt", "tokenizer.json")


def load_tokenizer(source):
    """AutoTokenizer.from_pretrained(source), `like_runtime`. A local directory must hold its
    vocabulary: without vocab.txt or tokenizer.json transformers 5 builds a tokenizer of the
    special tokens alone, and every word would silently become [UNK] (OSError)."""
    from pathlib import Path

    from transformers import AutoTokenizer

    path = Path(str(source))
    if path.is_dir() and not any((path / name).is_file() for name in VOCABULARY_FILES):
        raise OSError(f"{path}: no vocabulary ({' or '.join(VOCABULARY_FILES)}); without one "
                      "every word would be [UNK]")
    return like_runtime(AutoTokenizer.from_pretrained(str(source)))
