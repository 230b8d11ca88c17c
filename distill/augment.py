"""Text augmentation for distillation transfer data (EDA-style ops, embedding synonyms,
back-translation). The teacher labels every new text with its soft outputs, so an op that
changes a text's meaning is harmless: the student learns the teacher's view of it.

Texts are split into units: words for space-separated text, single characters for CJK text
(a Latin word inside CJK text stays one unit). Every op is a pure function of (units, rng).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

import numpy as np

OPS = ("synonym", "insert", "swap", "delete")
_CJK_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af\U00020000-\U0002ffff"
_CJK = re.compile(f"[{_CJK_RANGES}]")
_UNIT = re.compile(f"[{_CJK_RANGES}]|[^\\s{_CJK_RANGES}]+")  # one CJK character, or a run of other non-space


@dataclass(frozen=True)
class AugmentOptions:
    factor: int = 2                      # new texts per training text
    ops: tuple[str, ...] = OPS           # each new text applies one op, drawn uniformly
    rate: float = 0.1                    # fraction of a text's units an op changes (at least 1)
    neighbours: int = 5                  # synonym candidates: the k nearest embeddings
    seed: int = 42
    back_translate: tuple[str, str] | None = None  # (forward, backward) seq2seq model paths

    def __post_init__(self):
        unknown = [op for op in self.ops if op not in OPS]
        if unknown:
            raise ValueError(f"unknown augmentation op(s) {', '.join(unknown)} (choose from {', '.join(OPS)})")
        if self.factor < 0 or not 0 < self.rate <= 1 or self.neighbours < 1:
            raise ValueError("augment factor must be >= 0, rate in (0, 1], neighbours >= 1")
        if self.factor and not self.ops:
            raise ValueError("augment factor > 0 needs at least one op")


def is_cjk(unit: str) -> bool:
    return bool(_CJK.fullmatch(unit))


def split_units(text: str) -> list[str]:
    """'a gripping film' -> ['a', 'gripping', 'film']; '很好看的电影' -> ['很', '好', ...]."""
    return _UNIT.findall(text)


def join_units(units: list[str]) -> str:
    """Inverse of split_units up to whitespace: a space only between two non-CJK units."""
    out = []
    for i, unit in enumerate(units):
        if i and not is_cjk(unit) and not is_cjk(units[i - 1]):
            out.append(" ")
        out.append(unit)
    return "".join(out)


def n_changes(units: list[str], rate: float) -> int:
    return max(1, int(round(rate * len(units))))


def random_deletion(units, n, rng: random.Random) -> list[str]:
    """Drop n distinct units (never all of them)."""
    if len(units) <= 1:
        return list(units)
    drop = set(rng.sample(range(len(units)), min(n, len(units) - 1)))
    return [u for i, u in enumerate(units) if i not in drop]


def random_swap(units, n, rng: random.Random) -> list[str]:
    """Swap the units at two random positions, n times."""
    out = list(units)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def random_insertion(units, n, rng: random.Random, synonyms: dict | None = None) -> list[str]:
    """Insert, n times at a random position, a synonym of a random unit of the text (EDA), or the
    unit itself when it has none."""
    out = list(units)
    for _ in range(n):
        if not out:
            break
        unit = rng.choice(out)
        candidates = (synonyms or {}).get(unit.lower()) or [unit]
        out.insert(rng.randrange(len(out) + 1), rng.choice(candidates))
    return out


def synonym_replacement(units, n, rng: random.Random, synonyms: dict) -> list[str]:
    """Replace up to n distinct units that have synonyms by one of them (random choice)."""
    out = list(units)
    positions = [i for i, u in enumerate(out) if synonyms.get(u.lower())]
    for i in rng.sample(positions, min(n, len(positions))):
        out[i] = rng.choice(synonyms[out[i].lower()])
    return out


def augment_one(units, op: str, rate: float, rng: random.Random, synonyms: dict) -> list[str]:
    n = n_changes(units, rate)
    if op == "delete":
        return random_deletion(units, n, rng)
    if op == "swap":
        return random_swap(units, n, rng)
    if op == "insert":
        return random_insertion(units, n, rng, synonyms)
    if op == "synonym":
        return synonym_replacement(units, n, rng, synonyms)
    raise ValueError(f"unknown augmentation op {op!r}")


def augment_texts(texts, options: AugmentOptions, synonyms: dict | None = None) -> list[str]:
    """options.factor new texts per input text (seeded), each from one random op. A draw that
    leaves the text unchanged is retried with another op a few times."""
    rng = random.Random(options.seed)
    synonyms = synonyms or {}
    out = []
    for text in texts:
        units = split_units(text)
        for _ in range(options.factor):
            new = units
            for _attempt in range(4):
                new = augment_one(units, rng.choice(options.ops), options.rate, rng, synonyms)
                if new != units:
                    break
            out.append(join_units(new))
    return out


# ---------------------------------------------------------------- synonyms from embeddings

def candidate_tokens(vocab: dict[str, int], special_tokens) -> list[str]:
    """Whole-word vocabulary entries that can stand for a word: no special tokens, no ##
    sub-word pieces, no [unusedN], at least one letter, digit or CJK character."""
    special = set(special_tokens)
    return [t for t in vocab if t not in special and not t.startswith("##")
            and not (t.startswith("[") and t.endswith("]")) and any(c.isalnum() for c in t)]


def embedding_synonyms(words, vocab: dict[str, int], embeddings: np.ndarray, special_tokens,
                       k: int = 5, chunk: int = 1024) -> dict[str, list[str]]:
    """{word: its k nearest whole-word tokens by cosine similarity of the input embeddings}
    for each word that is itself a candidate token. embeddings: (vocab_size, hidden)."""
    pool = candidate_tokens(vocab, special_tokens)
    pool_ids = np.array([vocab[t] for t in pool])
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    pool_vectors = unit[pool_ids]                                          # (P, H)
    in_pool = set(pool)
    queries = sorted({w for w in words if w in in_pool})
    out: dict[str, list[str]] = {}
    for start in range(0, len(queries), chunk):
        batch = queries[start:start + chunk]
        sims = unit[[vocab[w] for w in batch]] @ pool_vectors.T            # (B, P)
        top = np.argpartition(-sims, min(k + 1, sims.shape[1] - 1), axis=1)[:, :k + 1]
        for row, word in enumerate(batch):
            order = top[row][np.argsort(-sims[row, top[row]], kind="stable")]
            out[word] = [pool[j] for j in order if pool[j] != word][:k]
    return out


def synonyms_for_texts(texts, tokenizer, embeddings: np.ndarray, k: int) -> dict[str, list[str]]:
    """Embedding synonyms for every unit (lower-cased when the tokenizer lower-cases) of texts."""
    lower = bool(getattr(tokenizer, "do_lower_case", True))
    words = {(u.lower() if lower else u) for text in texts for u in split_units(text)}
    return embedding_synonyms(words, tokenizer.get_vocab(), embeddings, tokenizer.all_special_tokens, k)


# ---------------------------------------------------------------- back-translation

def translate(model_dir, texts, batch_size: int = 32, max_new_tokens: int = 128) -> list[str]:
    """Greedy translation of texts with a local seq2seq model (Marian, T5, ...), in input order."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from .predict import length_sorted_batches

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    positions = getattr(model.config, "max_position_embeddings", None)   # Marian has a table; T5 not
    if positions:   # longer inputs or outputs index past the position table
        max_new_tokens = min(max_new_tokens, positions - 1)   # the decoder start token takes one
    out = [""] * len(texts)
    with torch.inference_mode():
        for idx in length_sorted_batches([len(t) for t in texts], batch_size):
            batch = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                              max_length=max_new_tokens)
            generated = model.generate(**batch, max_new_tokens=max_new_tokens, num_beams=1, do_sample=False)
            for i, text in zip(idx, tokenizer.batch_decode(generated, skip_special_tokens=True)):
                out[i] = text.strip()
    return out


def back_translate(texts, forward: str, backward: str, batch_size: int = 32,
                   max_new_tokens: int = 128) -> list[str]:
    """texts -> forward model -> backward model: one paraphrase per text; empty results and
    results equal to their source are dropped."""
    pivot = translate(forward, list(texts), batch_size, max_new_tokens)
    back = translate(backward, pivot, batch_size, max_new_tokens)
    return [b for b, t in zip(back, texts) if b and b != t]
