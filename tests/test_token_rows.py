"""token_rows: compact tokenized rows give exactly what the tokenizer gives, chunk by chunk."""
from __future__ import annotations

import numpy as np
import pytest

from distill import token_rows
from distill.token_rows import tokenize_rows
from distill.tokenization import load_tokenizer
from distill.training import encode_rows
from tiny import make_reviews

TEXTS = ["a gripping film", "", "中文 电影 很好", " ".join(["boring"] * 80), "ok ok", "Café naïve"] + \
        [text for text, _ in make_reviews(20, seed=3)]


@pytest.fixture
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


@pytest.mark.parametrize("chunk", [3, 4096])
def test_rows_are_the_tokenizers_rows_whatever_the_chunk(tokenizer, monkeypatch, chunk):
    monkeypatch.setattr(token_rows, "CHUNK", chunk)
    rows = tokenize_rows(tokenizer, TEXTS, 32)
    expected = tokenizer(TEXTS, truncation=True, max_length=32)
    assert len(rows) == len(TEXTS) and list(rows.fields) == list(expected.keys())
    for i in range(len(TEXTS)):
        assert rows[i] == {name: expected[name][i] for name in expected.keys()}
    assert rows.lengths().tolist() == [len(ids) for ids in expected["input_ids"]]
    assert max(rows.lengths()) == 32                               # the long text is truncated
    assert rows.fields["input_ids"].dtype == np.int32 and rows.fields["attention_mask"].dtype == np.int8


def test_take_keeps_any_order_and_repeats(tokenizer):
    rows = tokenize_rows(tokenizer, TEXTS, 32)
    assert rows[-1] == rows[len(TEXTS) - 1] and rows[np.int64(2)] == rows[2]      # as a list indexes
    with pytest.raises(IndexError):
        rows[len(TEXTS)]
    picked = [5, 0, 0, 3, len(TEXTS) - 1, 1]
    taken = rows.take(picked)
    assert [taken[i] for i in range(len(picked))] == [rows[i] for i in picked]
    assert len(rows.take([])) == 0


def test_no_texts(tokenizer):
    rows = tokenize_rows(tokenizer, [], 32)
    assert len(rows) == 0 and rows.lengths().tolist() == [] and list(rows) == []
    assert "input_ids" in rows.fields


def test_a_training_dataset_gives_the_collators_rows_with_their_extras(tokenizer):
    dataset = encode_rows(tokenizer, TEXTS[:4], 16, labels=[0, 1, 0, 1])
    assert dataset[2] == {**tokenizer(TEXTS[2], truncation=True, max_length=16), "labels": 0}
    subset = dataset.subset([3, 1])
    assert len(subset) == 2 and subset[0] == dataset[3] and subset[1] == dataset[1]


def test_rows_take_six_bytes_a_token(tokenizer):
    """Lists of Python ints from the tokenizer took about 250 bytes a token (bench/bench_memory.py)."""
    rows = tokenize_rows(tokenizer, TEXTS * 50, 64)
    stored = sum(values.nbytes for values in rows.fields.values())
    assert stored == 6 * int(rows.lengths().sum())
