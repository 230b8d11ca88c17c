"""The edge bundle (DESIGN.md): model.onnx, vocab.txt, runtime.json, export.json and the
Hugging Face config/tokenizer files, built in a temporary sibling directory and renamed
into place only when every check passed (distill.savedir.atomic_directory).
"""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from export import ExportError
from export.onnx_export import INPUT_NAMES, OUTPUT_NAME
from runtime.classifier import vocab_digest

RUNTIME_FORMAT = 1
QUANTIZATION_NAME = "int8-dynamic"
HF_FILES = ("config.json",)  # copied verbatim; the tokenizer files come from save_pretrained


# ---------------------------------------------------------------- output directory

def check_out_dir(out, force: bool) -> Path:
    """Fail before any work when --out cannot be (re)placed; writes nothing."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise ExportError(f"--out {out} exists and is not a directory")
        if not force:
            raise ExportError(f"--out {out} already exists; pass --force to replace it")
    from distill.savedir import existing_ancestor, probe_writable

    ancestor = existing_ancestor(out)
    if not ancestor.is_dir():
        raise ExportError(f"cannot create --out {out}: {ancestor} is not a directory")
    try:
        probe_writable(ancestor)
    except PermissionError as error:
        raise ExportError(f"cannot write --out {out}: {error}") from None
    return out


@contextlib.contextmanager
def staging(out, force: bool):
    """A temporary sibling of `out`, renamed to `out` on success, removed on error
    (distill.savedir.atomic_directory, which also gives it a plain mkdir's mode)."""
    from distill.savedir import atomic_directory

    with atomic_directory(out, force=force) as tmp:
        yield Path(tmp)


# ---------------------------------------------------------------- tokenizer -> runtime.json

def _backend_state(tokenizer) -> dict | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return json.loads(backend.to_str()) if backend is not None else None


def tokenizer_settings(tokenizer) -> dict:
    """The `tokenizer` object of runtime.json, read from the model's own tokenizer (its fast
    backend's BertNormalizer and WordPiece model, else the Python tokenizer's attributes)."""
    from distill.tokenization import bert_normalizer

    state = _backend_state(tokenizer)
    if state is not None:
        model, normalizer = state.get("model") or {}, bert_normalizer(tokenizer)
        if model.get("type") != "WordPiece" or normalizer is None:
            kind = (state.get("normalizer") or {}).get("type")
            raise ExportError(f"{type(tokenizer).__name__} is a {model.get('type')} tokenizer with a "
                              f"{kind} normalizer; the bundle runtime reads BERT "
                              "WordPiece (BertNormalizer) tokenizers only")
        if model.get("continuing_subword_prefix", "##") != "##":
            raise ExportError(f"WordPiece prefix {model['continuing_subword_prefix']!r}: the runtime expects '##'")
        lowercase = bool(normalizer["lowercase"])
        strip_accents = normalizer.get("strip_accents")
        chinese = bool(normalizer.get("handle_chinese_chars", True))
        max_chars = int(model.get("max_input_chars_per_word", 100))
    else:
        basic = getattr(tokenizer, "basic_tokenizer", tokenizer)
        if not hasattr(tokenizer, "vocab"):
            raise ExportError(f"{type(tokenizer).__name__}: not a BERT WordPiece tokenizer")
        lowercase = bool(getattr(basic, "do_lower_case", getattr(tokenizer, "do_lower_case", True)))
        strip_accents = getattr(basic, "strip_accents", None)
        chinese = bool(getattr(basic, "tokenize_chinese_chars", True))
        max_chars = int(getattr(getattr(tokenizer, "wordpiece_tokenizer", None), "max_input_chars_per_word", 100))
    settings = {"type": "wordpiece", "lowercase": lowercase,
                "strip_accents": None if strip_accents is None else bool(strip_accents),
                "tokenize_chinese_chars": chinese}
    for key in ("unk_token", "cls_token", "sep_token", "pad_token", "mask_token"):
        token = getattr(tokenizer, key, None)
        if token is None and key != "mask_token":
            raise ExportError(f"the tokenizer has no {key}; BERT inputs need it")
        if token is not None:
            settings[key] = str(token)
    settings["max_input_chars_per_word"] = max_chars
    return settings


def vocab_lines(tokenizer) -> list[str]:
    """vocab.txt as lines (line i = the token with id i), written from the tokenizer's own
    {token: id} map rather than copied: that map is what the model was trained with. A vocab
    file with repeated lines (the last one wins in HF) or lines that are not whole tokens
    (empty, inner spaces) leaves ids no text can produce; those lines get a placeholder that no
    text can produce either ('[' and '-' are split off as punctuation), so every line is unique
    and the runtime's token -> id map equals Hugging Face's."""
    vocab = tokenizer.get_vocab()                                   # {token: id}
    lines: list[str | None] = [None] * (max(vocab.values()) + 1)
    for token, i in vocab.items():
        if token and len(token.split()) == 1 and token.split()[0] == token:
            lines[i] = token
    return [token if token is not None else f"[unused-id-{i}]" for i, token in enumerate(lines)]


def vocab_txt_bytes(tokenizer) -> bytes:
    """vocab.txt's bytes: vocab_lines in UTF-8, each ending in "\n" on every platform (text
    mode on Windows would write "\r\n", and Hugging Face keeps the "\r" in each token)."""
    return "".join(line + "\n" for line in vocab_lines(tokenizer)).encode("utf-8")


def runtime_config(labels, tokenizer, max_length: int, quantized: bool) -> dict:
    """runtime.json as DESIGN.md (plus mask_token / max_input_chars_per_word; write_support_files
    adds vocab_sha256). Labels must be distinct and non-empty: an app maps them back to classes."""
    labels = [str(name) for name in labels]
    repeated = sorted({name for name in labels if labels.count(name) > 1})
    if repeated or "" in labels:
        problem = f"repeat {', '.join(map(repr, repeated))}" if repeated else "include an empty name"
        raise ExportError(f"the model's labels (config.json id2label: {labels}) {problem}; give each "
                          "class its own name in config.json's id2label and label2id")
    return {"format": RUNTIME_FORMAT, "labels": labels,
            "inputs": list(INPUT_NAMES), "output": OUTPUT_NAME, "max_length": int(max_length),
            "tokenizer": tokenizer_settings(tokenizer),
            "quantization": QUANTIZATION_NAME if quantized else None}


# ---------------------------------------------------------------- files

def write_json(path, data: dict) -> None:
    from distill.savedir import write_json as write

    write(path, data)


def write_support_files(bundle_dir, model_dir, tokenizer, runtime: dict) -> list[str]:
    """vocab.txt, runtime.json, config.json and the tokenizer files; returns the names written."""
    bundle_dir, model_dir = Path(bundle_dir), Path(model_dir)
    tokenizer.save_pretrained(bundle_dir)
    for name in HF_FILES:
        shutil.copyfile(model_dir / name, bundle_dir / name)
    vocab = vocab_txt_bytes(tokenizer)
    (bundle_dir / "vocab.txt").write_bytes(vocab)
    write_json(bundle_dir / "runtime.json", {**runtime, "vocab_sha256": vocab_digest(vocab)})
    return sorted(p.name for p in bundle_dir.iterdir())
