"""`distill teach --extend-vocab`: add the training texts' missing characters (and, on request,
frequent words) to a teacher's WordPiece vocabulary, and grow its embedding table.

Why: a teacher whose vocabulary lacks the training texts' script sees them as [UNK] (the default
English teacher knows 244 CJK characters; THUCNews titles use about 3,300). Added:
- every character a training word needs and the vocabulary lacks, so no training text maps to
  [UNK]: a CJK character (BERT splits those into words of their own) as itself, any other
  character as `c` at the start of a word and `##c` inside one;
- with `words=N`, the N most frequent training words (seen at least twice) that are not whole
  tokens and that WordPiece splits into several pieces (domain vocabulary).
A new word's row is the mean of the rows of the pieces it used to split into. A new character's
row is drawn (init "sample", the default, seeded) from a normal distribution with the existing
rows' mean and per-dimension variance (Hewitt 2021, "Initializing new word embeddings for
pretrained language models"); init "mean" gives it the mean of all existing rows instead, but
then every new character looks the same to the encoder at first, and with thousands of them (a
Chinese training set on an English teacher) training starts from inputs it cannot tell apart
(measured on THUCNews: chance accuracy after the first epoch). New tokens go after the old ones,
so every old id keeps its meaning, and the saved vocab.txt lists them in id order.
"""
from __future__ import annotations

from collections import Counter


def is_cjk(char: str) -> bool:
    """The code-point ranges BERT's tokenizer spaces out as single-character words."""
    cp = ord(char)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def pre_tokenized_words(tokenizer, texts) -> Counter:
    """Word counts after the tokenizer's own normalisation (lower-casing, accents, CJK spacing)
    and pre-tokenisation (whitespace and punctuation splits)."""
    backend = tokenizer.backend_tokenizer
    counts: Counter = Counter()
    for text in texts:
        normal = backend.normalizer.normalize_str(text) if backend.normalizer else text
        counts.update(word for word, _ in backend.pre_tokenizer.pre_tokenize_str(normal))
    return counts


def missing_characters(words: Counter, vocab) -> list[str]:
    """Tokens to add so that every word can be spelt with vocabulary pieces, in first-seen order."""
    missing: dict[str, None] = {}
    for word in words:
        for i, char in enumerate(word):
            token = char if (i == 0 or is_cjk(char)) else "##" + char
            if token not in vocab:
                missing[token] = None
    return list(missing)


def frequent_split_words(tokenizer, words: Counter, vocab, n: int, min_count: int = 2) -> list[str]:
    """The n most frequent words (count >= min_count) that are not tokens and split into 2+ pieces."""
    if n <= 0:
        return []
    picked = []
    for word, count in words.most_common():
        if count < min_count or len(picked) == n:
            break
        if word not in vocab and len(word) > 1 and not any(is_cjk(c) for c in word):
            if len(tokenizer.backend_tokenizer.model.tokenize(word)) > 1:
                picked.append(word)
    return picked


def tokenizer_with_tokens(tokenizer, new_tokens: list[str]):
    """A BertTokenizer over the old vocabulary plus new_tokens (appended), with the old one's
    normalisation settings and special tokens."""
    from transformers import BertTokenizer

    from .tokenization import bert_normalizer, like_runtime

    vocab = dict(tokenizer.get_vocab())
    for token in new_tokens:
        vocab[token] = len(vocab)
    normalizer = bert_normalizer(tokenizer) or {}
    special = {name: getattr(tokenizer, name) for name in
               ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
               if getattr(tokenizer, name, None) is not None}
    return like_runtime(BertTokenizer(vocab=vocab, do_lower_case=normalizer.get("lowercase", True),
                                      tokenize_chinese_chars=normalizer.get("handle_chinese_chars", True),
                                      strip_accents=normalizer.get("strip_accents"),
                                      model_max_length=tokenizer.model_max_length, **special))


INITS = ("mean", "sample")


def grow_embeddings(model, tokenizer, new_tokens: list[str], init: str = "sample", seed: int = 0) -> None:
    """Append len(new_tokens) rows to the input embeddings, in place: a word's row is the mean of
    its old pieces' rows; any other token's the mean of all old rows (init "mean") or a draw from
    N(mean, per-dimension variance) of the old rows (init "sample")."""
    import torch

    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, not {init!r}")

    old = model.get_input_embeddings().weight.detach().clone()      # (V, H)
    model.resize_token_embeddings(old.shape[0] + len(new_tokens), mean_resizing=False)
    weight = model.get_input_embeddings().weight                    # (V + n, H)
    mean, std = old.mean(dim=0), old.std(dim=0)                     # (H,), (H,)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for offset, token in enumerate(new_tokens):
            is_word = len(token) > 1 and not token.startswith("##")
            pieces = [t.id for t in tokenizer.backend_tokenizer.model.tokenize(token)] if is_word else []
            pieces = [p for p in pieces if p != tokenizer.unk_token_id]
            if pieces:
                row = old[pieces].mean(dim=0)
            elif init == "sample":
                row = mean + std * torch.randn(mean.shape, generator=generator, dtype=old.dtype)
            else:
                row = mean
            weight[old.shape[0] + offset] = row
    model.config.vocab_size = weight.shape[0]


def extend_vocabulary(model, tokenizer, texts, words: int = 0, init: str = "sample", seed: int = 0):
    """(extended tokenizer, report); model's embeddings grow in place. Nothing changes (and the
    same tokenizer comes back) when nothing is missing."""
    counts = pre_tokenized_words(tokenizer, texts)
    vocab = tokenizer.get_vocab()
    chars = missing_characters(counts, vocab)
    split_words = frequent_split_words(tokenizer, counts, vocab, words)
    added = set(chars)
    new_tokens = chars + [w for w in split_words if w not in added]
    before = len(vocab)
    unk_before = _unknown_words(tokenizer, counts)
    if new_tokens:
        grow_embeddings(model, tokenizer, new_tokens, init, seed)
        tokenizer = tokenizer_with_tokens(tokenizer, new_tokens)
    report = {"vocab_before": before, "vocab_after": len(tokenizer.get_vocab()),
              "added_characters": len(chars), "added_cjk_characters": sum(len(c) == 1 and is_cjk(c) for c in chars),
              "added_words": len(new_tokens) - len(chars), "init": init, "examples": new_tokens[:20],
              "training_words_with_unk_before": unk_before,
              "training_words_with_unk_after": _unknown_words(tokenizer, counts)}
    return tokenizer, report


def _unknown_words(tokenizer, counts: Counter) -> int:
    """How many training word occurrences contain [UNK] under this tokenizer."""
    model, unk = tokenizer.backend_tokenizer.model, tokenizer.unk_token
    return int(sum(c for w, c in counts.items() if any(t.value == unk for t in model.tokenize(w))))
