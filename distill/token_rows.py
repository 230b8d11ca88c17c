"""Tokenized texts kept compactly, for training, scoring and evaluation over large files.

A Hugging Face tokenizer called on all texts at once returns lists of Python ints, about 250
bytes a token with its Encoding objects, and the process keeps that memory: 3 GB for 400,000
short rows. `tokenize_rows` tokenizes CHUNK texts at a time and keeps each field as one flat
array plus row offsets (int32 ids, int8 masks and segment ids: 6 bytes a token). `rows[i]` is
the dict of id lists the tokenizer would have given for text i, so `tokenizer.pad` and
`DataCollatorWithPadding` take rows unchanged.
"""
from __future__ import annotations

import numpy as np

CHUNK = 4096                      # texts tokenized at a time
SMALL_FIELDS = ("attention_mask", "token_type_ids", "special_tokens_mask")   # values 0/1 (segments: a few)


class TokenRows:
    """Rows of token ids, no padding: `fields` {name: flat array}, `offsets` (n + 1,) int64."""

    def __init__(self, fields: dict[str, np.ndarray], offsets: np.ndarray):
        self.fields = fields
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i) -> dict[str, list[int]]:
        i = int(i) + len(self) if i < 0 else int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} of {len(self)}")
        start, end = self.offsets[i], self.offsets[i + 1]
        return {name: values[start:end].tolist() for name, values in self.fields.items()}

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, indices) -> "TokenRows":
        """The rows at `indices` (any order, repeats allowed), as a new TokenRows."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        lengths = self.lengths()[indices]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # positions of every kept token in the flat arrays, without a Python loop over rows
        starts = np.repeat(self.offsets[indices] - offsets[:-1], lengths)
        flat = np.arange(offsets[-1], dtype=np.int64) + starts
        return TokenRows({name: values[flat] for name, values in self.fields.items()}, offsets)


def _flat(lists, name: str) -> np.ndarray:
    dtype = np.int8 if name in SMALL_FIELDS else np.int32
    total = sum(len(row) for row in lists)
    return np.fromiter((x for row in lists for x in row), dtype=dtype, count=total)


def tokenize_rows(tokenizer, texts, max_length: int, progress: bool = False, desc: str = "tokenize") -> TokenRows:
    """Tokenize `texts` (truncation at max_length, no padding) CHUNK at a time."""
    from tqdm.auto import tqdm

    texts = list(texts)
    parts, lengths = {}, []
    starts = range(0, len(texts), CHUNK)
    for start in tqdm(starts, desc=desc, unit="chunk", disable=not progress or len(starts) < 2):
        enc = tokenizer(texts[start:start + CHUNK], truncation=True, max_length=max_length)
        for name in enc.keys():
            parts.setdefault(name, []).append(_flat(enc[name], name))
        lengths.extend(len(ids) for ids in enc["input_ids"])
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
    if not texts:
        names = tokenizer.model_input_names
        return TokenRows({name: np.zeros(0, np.int8 if name in SMALL_FIELDS else np.int32) for name in names}, offsets)
    return TokenRows({name: np.concatenate(chunks) for name, chunks in parts.items()}, offsets)
