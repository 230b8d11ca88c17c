"""Checks an export must pass before its bundle is written.

- parity: fp32 ONNX (onnxruntime, 1 thread) vs the torch model on the same padded batches,
  max |logit difference| <= PARITY_TOLERANCE;
- accuracy (with an eval file): torch, fp32 and int8 ONNX; int8 may lose at most
  --max-accuracy-drop points of accuracy against fp32;
- op census: every op type of every graph is one the numpy runtime implements;
- tokenizer: the numpy runtime's tokenizer gives the model tokenizer's ids on every text.
"""
from __future__ import annotations

import random
from collections import Counter

import numpy as np

from export import ExportError

PARITY_TOLERANCE = 1e-4


# ---------------------------------------------------------------- inputs

def _plain_words(tokenizer) -> list[str]:
    """Whole-word vocabulary entries (no ## pieces, no [special] or [unused] tokens), sorted. A
    vocabulary without any (trimmed to the special tokens, for texts the teacher only knew as
    [UNK]) gets plain ASCII words, each of which is then [UNK] or pieces: still model inputs."""
    special = set(tokenizer.all_special_tokens)
    words = sorted(w for w in tokenizer.get_vocab()
                   if w.strip() and not w.startswith("##") and w not in special
                   and not (w.startswith("[") and w.endswith("]")))
    return words or ["a", "film", "the", "was", "good", "bad", "1", "x"]


def generated_texts(tokenizer, n: int, max_length: int, seed: int = 0) -> list[str]:
    """n texts of whole vocabulary words, from 1 word up to more than max_length tokens
    (the longest are truncated to exactly max_length)."""
    words, rng = _plain_words(tokenizer), random.Random(seed)
    sizes = np.linspace(1, max_length + 8, num=n).round().astype(int) if n > 1 else [1] * n
    return [" ".join(rng.choice(words) for _ in range(int(k))) for k in sizes]


def encode_rows(tokenizer, texts, max_length: int) -> list[dict]:
    """One dict of id lists (input_ids, attention_mask, token_type_ids) per text."""
    from distill.predict import encode

    rows = list(encode(tokenizer, texts, max_length))
    for row in rows:
        row.setdefault("token_type_ids", [0] * len(row["input_ids"]))
    return rows


def edge_rows(tokenizer, max_length: int) -> list[dict]:
    """Sequence length 1 ([CLS] alone) and exactly max_length: the ends of the dynamic axis."""
    rng = random.Random(1)
    text = " ".join(rng.choice(_plain_words(tokenizer)) for _ in range(max_length + 8))
    longest = encode_rows(tokenizer, [text], max_length)[0]
    if len(longest["input_ids"]) != max_length:
        raise ExportError(f"could not build a {max_length}-token input (got {len(longest['input_ids'])})")
    single = {"input_ids": [tokenizer.cls_token_id], "attention_mask": [1], "token_type_ids": [0]}
    return [single, longest]


def pad_rows(rows: list[dict], pad_id: int) -> dict:
    """Right-pad rows to the longest: {input name: int64 (B, T)}."""
    width = max(len(r["input_ids"]) for r in rows)
    return {name: np.array([r[name] + [pad] * (width - len(r[name])) for r in rows], dtype=np.int64)
            for name, pad in (("input_ids", pad_id), ("attention_mask", 0), ("token_type_ids", 0))}


def batches(rows: list[dict], batch_size: int, pad_id: int) -> list[tuple[np.ndarray, dict]]:
    """(row indices, feeds) per batch, rows of similar length together."""
    from distill.predict import length_sorted_batches

    return [(idx, pad_rows([rows[i] for i in idx], pad_id))
            for idx in length_sorted_batches([len(r["input_ids"]) for r in rows], batch_size)]


def mixed_batch(rows: list[dict], pad_id: int) -> list[tuple[np.ndarray, dict]]:
    """All rows in one batch padded to the longest: heavy padding on purpose."""
    return [(np.arange(len(rows)), pad_rows(rows, pad_id))]


# ---------------------------------------------------------------- running

def torch_logits(model, feed_batches, n: int) -> np.ndarray:
    import torch

    out = np.zeros((n, model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for idx, feeds in feed_batches:
            tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
            out[idx] = model(**tensors).logits.float().numpy()
    return out


def ort_session(path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only while validating; the test checks warnings
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_logits(session, feed_batches, n: int) -> np.ndarray:
    names = [i.name for i in session.get_inputs()]
    out = None
    for idx, feeds in feed_batches:
        logits = session.run(["logits"], {k: feeds[k] for k in names})[0]
        if out is None:
            out = np.zeros((n, logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    return out


# ---------------------------------------------------------------- measures

def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0


def label_agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(axis=1) == b.argmax(axis=1)).mean()) if len(a) else 1.0


def scores(y_true, logits: np.ndarray, labels) -> dict:
    """accuracy and macro-F1 (distill.metrics) of logits against label ids."""
    from distill.metrics import evaluate
    from distill.predict import softmax

    report = evaluate(y_true, softmax(logits), labels)
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}


def check_parity(diff: float, what: str = "fp32 ONNX vs torch") -> None:
    if not diff <= PARITY_TOLERANCE:  # also catches NaN
        raise ExportError(f"{what}: max |logit difference| {diff:.3g} exceeds {PARITY_TOLERANCE:g}")


def accuracy_drop_points(fp32: dict, int8: dict) -> float:
    """Points of accuracy int8 loses, rounded to 1e-9: accuracies are row fractions, and
    100 * (0.27 - 0.26) is 1.0000000000000009, which a limit of exactly 1 would refuse."""
    return round(100.0 * (fp32["accuracy"] - int8["accuracy"]), 9)


def check_accuracy_drop(drop_points: float, limit_points: float) -> None:
    if drop_points > limit_points:
        raise ExportError(f"int8 accuracy is {drop_points:.2f} points below fp32, more than "
                          f"--max-accuracy-drop {limit_points:g}: bundle not written")


def tokenizer_parity(tokenizer, runtime: dict, texts, model_rows: list[dict], max_length: int) -> dict:
    """The numpy runtime's tokenizer (the bundle's vocab.txt and runtime.json settings) against
    the model's (model_rows: encode_rows of the texts) on the validation texts: {"texts",
    "differ", "first"}, where "first" shows the first text whose ids differ, as both split it."""
    from export.bundle import vocab_lines
    from runtime.tokenizer import WordPieceTokenizer, tokenizer_kwargs

    lines = vocab_lines(tokenizer)
    bundle = WordPieceTokenizer({token: i for i, token in enumerate(lines)},
                                **tokenizer_kwargs(runtime["tokenizer"]))
    runtime_ids = [bundle.encode(text, max_length) for text in texts]
    differ = [i for i, (ids, row) in enumerate(zip(runtime_ids, model_rows)) if ids != list(row["input_ids"])]
    first = None
    if differ:
        i = differ[0]
        first = {"text": texts[i], "model": [lines[t] for t in model_rows[i]["input_ids"]],
                 "runtime": [lines[t] for t in runtime_ids[i]]}
    return {"texts": len(texts), "differ": len(differ), "first": first}


def check_tokenizer_parity(parity: dict) -> None:
    if parity["differ"]:
        first = parity["first"]
        raise ExportError(f"the numpy runtime tokenizes {parity['differ']} of {parity['texts']} texts "
                          f"differently from the model's tokenizer (first: {first['text']!r} is "
                          f"{' '.join(first['model'])} for the model, {' '.join(first['runtime'])} "
                          "for the runtime; runtime/README.md lists the known differences)")


# ---------------------------------------------------------------- op census

def op_census(path) -> dict:
    """{op_type: count} of a saved graph (domain-qualified for anything outside ai.onnx)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
                     for n in model.graph.node)
    return dict(sorted(counts.items()))


def opset_of(path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def runtime_op_types() -> set[str]:
    """The op types the numpy runtime implements (runtime.ops.OPS keys)."""
    from runtime.ops import OPS

    return set(OPS)


def check_runtime_ops(census_by_graph: dict[str, dict]) -> dict[str, list[str]]:
    """{graph: missing op types}; raises when any graph uses an op the runtime lacks."""
    supported = runtime_op_types()
    missing = {graph: sorted(set(census) - supported) for graph, census in census_by_graph.items()}
    bad = {graph: ops for graph, ops in missing.items() if ops}
    if bad:
        listed = "; ".join(f"{graph}: {', '.join(ops)}" for graph, ops in bad.items())
        raise ExportError(f"the numpy runtime does not implement these op types ({listed}); "
                          "add them to runtime/ops.py or change the export")
    return missing
