"""--trim-vocab: keep only the WordPiece tokens a student needs, and shrink its embeddings.

Kept:
- every token the texts use (with `min_count` N > 1, every token they use at least N times);
- the special tokens;
- every single-character token of the vocabulary (plain and ## forms), so an unseen word still
  breaks into characters instead of [UNK]. With `characters="seen"`, only those of the
  characters the texts' tokens hold (110 of the default teacher's 1,994 on SST-2): a word made of
  those characters still breaks down, but a word with a character the texts never hold (say a
  CJK character in English reviews) becomes [UNK];
- with `max_tokens` M, at most M tokens in all, for a size budget (one embedding row per token):
  the special and single-character tokens, then the tokens the texts use most (`rank="count"`;
  ties go to the lower id, since BERT's vocab.txt lists words roughly by pretraining frequency:
  the, of, and...), or the used tokens in vocabulary order (`rank="vocab"`: lower id first, the
  pretraining corpus's guess at what unseen text uses; on SST-2 it splits more dev texts than
  the counts do: 660 of 872 against 522 at 7,875 tokens);
Kept tokens keep their relative order. WordPiece is greedy longest-match-first, so a text whose
tokens are all kept tokenizes to the same pieces with the trimmed vocabulary, and the trimmed
model gives it the same logits; a word whose token was dropped as rare splits into the longest
kept pieces. `distill student` trims the student before training, or with --trim-after-training
the trained one (`apply_trim`, the kept ids chosen from the same texts before training): dropped
words are then learnt whole and split only at inference, which costs less accuracy.

Why min_count: the embedding table of a 3-layer, 384-wide student is 11.7M of its 17.4M
parameters; the SST-2 training texts use about 11,500 WordPiece tokens, so keeping them all
shrinks the student only 1.6x. Most of those tokens recur (SST-2 holds overlapping phrases):
on 48k SST-2 texts, min_count 2 drops ~500 tokens and min_count 10 keeps 7,624 (2.0x).
"""
from __future__ import annotations

from collections import Counter

import numpy as np


def is_single_character(token: str) -> bool:
    return len(token) == 1 or (token.startswith("##") and len(token) == 3)


def token_counts(tokenizer, texts, max_length: int, batch_size: int = 4096) -> Counter:
    """How often each token id occurs in the tokenized texts."""
    counts: Counter = Counter()
    texts = list(texts)
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length)
        for ids in enc["input_ids"]:
            counts.update(ids)
    return counts


CHARACTER_CHOICES = ("all", "seen")
RANK_CHOICES = ("count", "vocab")


def kept_token_ids(tokenizer, texts, max_length: int, min_count: int = 1, characters: str = "all",
                   max_tokens: int | None = None, rank: str = "count") -> np.ndarray:
    """Sorted old ids to keep (see the module docstring)."""
    counts = token_counts(tokenizer, texts, max_length)
    return kept_ids_from_counts(tokenizer, counts, min_count, characters, max_tokens, rank)


def seen_characters(tokenizer, counts: Counter) -> set[str]:
    """The characters of every non-special token used (## stripped). A word WordPiece could split
    is the concatenation of its pieces, so these are exactly the characters of those words."""
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens([i for i in counts if i not in special])
    return {c for t in tokens for c in (t[2:] if t.startswith("##") else t)}


def kept_ids_from_counts(tokenizer, counts: Counter, min_count: int = 1, characters: str = "all",
                         max_tokens: int | None = None, rank: str = "count") -> np.ndarray:
    """kept_token_ids from token_counts already taken (one count serves several min counts)."""
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, not {min_count}")
    if characters not in CHARACTER_CHOICES:
        raise ValueError(f"characters must be one of {', '.join(CHARACTER_CHOICES)}, not {characters!r}")
    if rank not in RANK_CHOICES:
        raise ValueError(f"rank must be one of {', '.join(RANK_CHOICES)}, not {rank!r}")
    vocab = tokenizer.get_vocab()
    seen = seen_characters(tokenizer, counts) if characters == "seen" else None
    base = set(tokenizer.all_special_ids)
    base.update(i for t, i in vocab.items() if is_single_character(t) and (seen is None or t[-1] in seen))
    words = sorted((i for i, n in counts.items() if n >= min_count and i not in base),
                   key=(lambda i: (-counts[i], i)) if rank == "count" else None)   # first kept first
    if max_tokens is not None:
        if max_tokens < len(base):
            raise ValueError(f"max_tokens {max_tokens:,} is below the {len(base):,} special and "
                             f"single-character tokens that are always kept")
        words = words[:max_tokens - len(base)]
    return np.array(sorted(base.union(words)), dtype=np.int64)


def trimmed_tokenizer(tokenizer, kept_ids: np.ndarray):
    """A BertTokenizer over the kept tokens (new id = position in kept_ids), with the same
    normalisation settings; save_pretrained writes its vocab.txt."""
    from transformers import BertTokenizer

    from .tokenization import like_runtime

    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    vocab = {by_id[int(old)]: new for new, old in enumerate(kept_ids)}
    special = {name: getattr(tokenizer, name) for name in
               ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
               if getattr(tokenizer, name, None) is not None}
    return like_runtime(BertTokenizer(vocab=vocab, do_lower_case=getattr(tokenizer, "do_lower_case", True),
                                      tokenize_chinese_chars=getattr(tokenizer, "tokenize_chinese_chars", True),
                                      strip_accents=getattr(tokenizer, "strip_accents", None),
                                      model_max_length=tokenizer.model_max_length, **special))


def trim_embeddings(model, kept_ids: np.ndarray) -> None:
    """Replace the input embedding table by its kept rows, in place; update config ids."""
    import torch

    old = model.get_input_embeddings()
    remap = {int(old_id): new_id for new_id, old_id in enumerate(kept_ids)}
    index = torch.as_tensor(kept_ids, dtype=torch.long)
    padding = remap.get(old.padding_idx) if old.padding_idx is not None else None
    new = torch.nn.Embedding(len(kept_ids), old.weight.shape[1], padding_idx=padding)
    with torch.no_grad():
        new.weight.copy_(old.weight[index])                               # (V_kept, H)
    model.set_input_embeddings(new)
    model.config.vocab_size = len(kept_ids)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        value = getattr(model.config, name, None)
        if value is not None and int(value) in remap:
            setattr(model.config, name, remap[int(value)])


def trim_vocab(model, tokenizer, texts, max_length: int, min_count: int = 1, characters: str = "all",
               max_tokens: int | None = None, rank: str = "count"):
    """(trimmed tokenizer, report) after trimming model's embeddings in place."""
    kept = kept_token_ids(tokenizer, texts, max_length, min_count, characters, max_tokens, rank)
    return apply_trim(model, tokenizer, kept, {"min_count": min_count, "characters": characters,
                                               "max_tokens": max_tokens, "rank": rank})


def apply_trim(model, tokenizer, kept_ids: np.ndarray, settings: dict):
    """(trimmed tokenizer, report) after keeping only kept_ids' embedding rows of model, in place;
    settings (how kept_ids were chosen) go into the report."""
    before = model.get_input_embeddings().weight.shape[0]
    new_tokenizer = trimmed_tokenizer(tokenizer, kept_ids)
    trim_embeddings(model, kept_ids)
    hidden = model.get_input_embeddings().weight.shape[1]
    report = {"vocab_before": int(before), "vocab_after": int(len(kept_ids)), **settings,
              "embedding_parameters_before": int(before * hidden),
              "embedding_parameters_after": int(len(kept_ids) * hidden)}
    return new_tokenizer, report


def retokenized(old_tokenizer, new_tokenizer, texts, max_length: int) -> dict:
    """How many texts (e.g. the eval set) the trimmed vocabulary tokenizes into other pieces than
    the full one: only those can get other logits from a model whose kept rows are unchanged."""
    texts = list(texts)
    old = old_tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    new = new_tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    old_tokens = [old_tokenizer.convert_ids_to_tokens(ids) for ids in old]
    new_tokens = [new_tokenizer.convert_ids_to_tokens(ids) for ids in new]
    changed = sum(a != b for a, b in zip(old_tokens, new_tokens))
    return {"texts": len(texts), "changed": int(changed), "fraction": changed / len(texts) if texts else 0.0}


def write_vocab_txt(tokenizer, directory) -> None:
    """vocab.txt (one token per line, line number = id): transformers 5 tokenizers do not write
    it, and the runtime's WordPiece tokenizer reads it. Written as a bundle's is: ids no token
    holds (a source vocab.txt with repeated lines) get a placeholder line no text produces."""
    from pathlib import Path

    from export.bundle import vocab_txt_bytes

    (Path(directory) / "vocab.txt").write_bytes(vocab_txt_bytes(tokenizer))
