"""Augmentation ops (words and CJK characters), embedding synonyms, back-translation."""
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from distill.augment import (AugmentOptions, augment_texts, back_translate, embedding_synonyms, join_units,
                             random_deletion, random_insertion, random_swap, split_units, synonym_replacement,
                             translate)

EN = "the acting was wonderful and the story really moving".split()
ZH = split_units("这部电影的故事非常感人")


def test_units_words_and_cjk_characters():
    assert split_units("a gripping  film") == ["a", "gripping", "film"]
    assert ZH == list("这部电影的故事非常感人")
    assert split_units("很好看 ok 的电影") == ["很", "好", "看", "ok", "的", "电", "影"]
    assert join_units(ZH) == "这部电影的故事非常感人"
    assert join_units(["a", "good", "film"]) == "a good film"
    assert join_units(["好", "ok", "fine", "的"]) == "好ok fine的"


def is_subsequence(short, long):
    it = iter(long)
    return all(any(x == y for y in it) for x in short)


@pytest.mark.parametrize("units", [EN, ZH], ids=["words", "cjk"])
def test_random_deletion(units):
    out = random_deletion(units, 3, random.Random(0))
    assert len(out) == len(units) - 3 and is_subsequence(out, units)
    assert random_deletion(["only"], 2, random.Random(0)) == ["only"]
    assert len(random_deletion(units[:2], 5, random.Random(0))) == 1   # never deletes everything


@pytest.mark.parametrize("units", [EN, ZH], ids=["words", "cjk"])
def test_random_swap(units):
    out = random_swap(units, 2, random.Random(1))
    assert Counter(out) == Counter(units) and out != units
    assert 2 <= sum(a != b for a, b in zip(out, units)) <= 4


@pytest.mark.parametrize("units", [EN, ZH], ids=["words", "cjk"])
def test_random_insertion(units):
    synonyms = {units[0]: ["SYN"]}
    out = random_insertion(units, 3, random.Random(2), synonyms)
    assert len(out) == len(units) + 3
    inserted = Counter(out) - Counter(units)
    assert sum(inserted.values()) == 3 and set(inserted) <= set(units) | {"SYN"}
    assert is_subsequence(units, out)


@pytest.mark.parametrize("units", [EN, ZH], ids=["words", "cjk"])
def test_synonym_replacement(units):
    synonyms = {units[1]: ["X1", "X2"], units[3]: ["Y1"]}
    out = synonym_replacement(units, 5, random.Random(3), synonyms)
    changed = [i for i, (a, b) in enumerate(zip(units, out)) if a != b]
    assert changed == [1, 3] and out[1] in ("X1", "X2") and out[3] == "Y1"
    one = synonym_replacement(units, 1, random.Random(3), synonyms)
    assert sum(a != b for a, b in zip(units, one)) == 1
    assert synonym_replacement(units, 3, random.Random(3), {}) == units


def test_augment_texts_is_seeded_and_makes_k_per_text():
    texts = [" ".join(EN), "这部电影的故事非常感人", "dull and lifeless"]
    options = AugmentOptions(factor=3, rate=0.2, seed=7)
    out = augment_texts(texts, options)
    assert len(out) == 9 and out == augment_texts(texts, options)
    assert out != augment_texts(texts, AugmentOptions(factor=3, rate=0.2, seed=8))
    assert sum(o not in texts for o in out) >= 8
    for cjk in out[3:6]:  # character-level edits, no spaces introduced into Chinese text
        assert " " not in cjk and set(cjk) <= set("这部电影的故事非常感人")
    only_delete = augment_texts(texts[:1], AugmentOptions(factor=2, ops=("delete",), rate=0.2, seed=0))
    assert all(len(o.split()) == len(EN) - 2 for o in only_delete)


def test_augment_options_validation():
    with pytest.raises(ValueError, match="unknown augmentation op"):
        AugmentOptions(ops=("shuffle",))
    with pytest.raises(ValueError):
        AugmentOptions(factor=-1)
    with pytest.raises(ValueError):
        AugmentOptions(rate=0)


def test_embedding_synonyms_use_cosine_and_skip_special_and_subword_tokens():
    tokens = ["[PAD]", "[UNK]", "[CLS]", "good", "great", "##good", "fine", "[unused0]", "bad", ",", "好", "棒"]
    vocab = {t: i for i, t in enumerate(tokens)}
    emb = np.zeros((len(tokens), 3), dtype=np.float32)
    emb[vocab["good"]] = [1, 0.1, 0]
    emb[vocab["great"]] = [50, 10, 0]      # same direction as good, long vector: cosine, not dot
    emb[vocab["fine"]] = [1, 0.5, 0.2]
    emb[vocab["bad"]] = [-1, 0, 0.1]
    emb[vocab["##good"]] = [1, 0.1, 0]      # identical to good but a sub-word piece
    emb[vocab["[CLS]"]] = [1, 0.1, 0]       # identical but special
    emb[vocab["[unused0]"]] = [1, 0.1, 0]
    emb[vocab[","]] = [1, 0.1, 0]           # punctuation is no synonym
    emb[vocab["好"]] = [0, 0, 1]
    emb[vocab["棒"]] = [0, 0.1, 1]
    out = embedding_synonyms(["good", "好", "missing", "##good"], vocab, emb, ["[PAD]", "[UNK]", "[CLS]"], k=2)
    assert out["good"] == ["great", "fine"]
    assert out["好"][0] == "棒"
    assert "missing" not in out and "##good" not in out


# ---------------------------------------------------------------- back-translation

def make_tiny_seq2seq(out_dir, words, seed):
    """A randomly initialised Marian model with a word-level tokenizer; never emits </s> early."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    out = Path(out_dir)
    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>"] + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    backend.decoder = decoders.WordPiece(prefix="##")
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(out)
    config = MarianConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                          decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
                          decoder_start_token_id=0, forced_eos_token_id=1)
    torch.manual_seed(seed)
    model = MarianMTModel(config)
    with torch.no_grad():
        model.final_logits_bias[0, :2] = -1e4   # no <pad>, no early </s>: outputs are never empty
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def seq2seq_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("seq2seq")
    forward = make_tiny_seq2seq(root / "en-xx", "le film etait bon mauvais tres".split(), seed=0)
    backward = make_tiny_seq2seq(root / "xx-en", "the film was good bad very dull great".split(), seed=1)
    return str(forward), str(backward)


def test_back_translation_through_two_local_models(seq2seq_pair):
    forward, backward = seq2seq_pair
    texts = ["the film was good", "a very dull film indeed", "bad"]
    pivot = translate(forward, texts, max_new_tokens=6)
    assert len(pivot) == 3 and all(p and set(p.split()) <= set("le film etait bon mauvais tres".split())
                                   for p in pivot)
    back = back_translate(texts, forward, backward, max_new_tokens=6)
    assert back == back_translate(texts, forward, backward, max_new_tokens=6)   # deterministic (greedy)
    assert 1 <= len(back) <= 3
    english = set("the film was good bad very dull great".split())
    assert all(b and set(b.split()) <= english and len(b.split()) <= 6 for b in back)



def test_translation_stays_within_the_model_positions(seq2seq_pair):
    """The fixtures have 64 positions; the default 128 new tokens indexed past them."""
    forward, _ = seq2seq_pair
    (out,) = translate(forward, ["the film was good"])
    assert 1 <= len(out.split()) <= 63


def test_back_translation_feeds_the_pivot_to_the_backward_model(monkeypatch):
    """(The tiny random models above answer every input alike, so the chain is checked here.)"""
    import distill.augment as augment

    calls = []

    def fake_translate(model, texts, batch_size=32, max_new_tokens=128):
        calls.append((model, list(texts)))
        return [f"{model}({t})" if t != "same" else t for t in texts]

    monkeypatch.setattr(augment, "translate", fake_translate)
    back = augment.back_translate(["a", "b"], "en-xx", "xx-en")
    assert calls == [("en-xx", ["a", "b"]), ("xx-en", ["en-xx(a)", "en-xx(b)"])]
    assert back == ["xx-en(en-xx(a))", "xx-en(en-xx(b))"]
    monkeypatch.setattr(augment, "translate", lambda model, texts, *args: ["", "same"])
    assert augment.back_translate(["x", "same"], "en-xx", "xx-en") == []       # empty or unchanged: dropped
