"""distill's Hugging Face tokenizer and the numpy runtime's split texts the same way: NFC for
tokenizers that keep accents, and the export's check that compares the two on every text."""
from __future__ import annotations

import json
import unicodedata

import pytest
from click.testing import CliRunner

from export.cli import export_group
from tiny import make_tiny_model, write_csv

CASED_WORDS = ["Café", "Über", "Cafe", "good", "bad", "film"]
DECOMPOSED = [unicodedata.normalize("NFD", t) for t in ("Café good film", "Über bad film", "a Café")]


def cased_model(out_dir, extra_words=CASED_WORDS, mlm: bool = False):
    """make_tiny_model's classifier with a cased tokenizer (accents kept) over a vocabulary with
    composed accented words; its head is scaled up so that one token more or less moves the
    logits by far more than the engines' 1e-4 (a random tiny model's barely move)."""
    import torch
    from transformers import BertForSequenceClassification, BertTokenizer

    out = make_tiny_model(out_dir, mlm=mlm)
    if not mlm:
        model = BertForSequenceClassification.from_pretrained(out)
        with torch.no_grad():
            model.classifier.weight.mul_(1000)
        model.save_pretrained(out)
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    lines = vocab[:-len(extra_words)] + extra_words           # keep the model's vocabulary size
    (out / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (out / name).unlink(missing_ok=True)
    BertTokenizer(str(out / "vocab.txt"), do_lower_case=False).save_pretrained(out)
    return out


def test_a_tokenizer_that_keeps_accents_composes_them_as_the_runtime_does(tmp_path):
    from transformers import AutoTokenizer

    from distill.predict import load_model_dir
    from distill.tokenization import load_tokenizer
    from runtime.tokenizer import WordPieceTokenizer, load_vocab

    model_dir = cased_model(tmp_path / "cased")
    plain = AutoTokenizer.from_pretrained(model_dir)
    assert plain.tokenize(DECOMPOSED[0])[0] == "[UNK]"        # the Rust tokenizer alone: e + U+0301
    runtime = WordPieceTokenizer(load_vocab(model_dir / "vocab.txt"), lowercase=False)
    for tokenizer in (load_tokenizer(model_dir), load_model_dir(model_dir)[1]):
        assert tokenizer.tokenize(DECOMPOSED[0]) == ["Café", "good", "film"]
        assert [tokenizer(t)["input_ids"] for t in DECOMPOSED] == [runtime.encode(t) for t in DECOMPOSED]


@pytest.mark.parametrize("loader", ["teacher", "encoder", "masked_lm"])
def test_every_loader_of_a_checkpoint_composes(tmp_path, loader):
    """teach's, the prompt/contrastive encoder's and PET's masked LM's tokenizers."""
    from distill.fewshot import load_encoder
    from distill.fewshot_pet import load_masked_lm
    from distill.teacher import load_teacher_model

    model_dir = cased_model(tmp_path / "cased", mlm=loader == "masked_lm")
    load = {"teacher": lambda: load_teacher_model(str(model_dir), ["negative", "positive"], None, 0)[1],
            "encoder": lambda: load_encoder(str(model_dir))[1],
            "masked_lm": lambda: load_masked_lm(str(model_dir))[1]}[loader]
    assert load().tokenize(DECOMPOSED[0]) == ["Café", "good", "film"]


def test_lower_casing_tokenizers_are_left_as_they_are(tiny_model_dir):
    """They strip accents (NFD) anyway: NFC would change nothing, so none is added."""
    from distill.tokenization import bert_normalizer, load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    state = json.loads(tokenizer.backend_tokenizer.to_str())["normalizer"]
    assert state["type"] == "BertNormalizer" and bert_normalizer(tokenizer)["lowercase"] is True


def test_like_runtime_adds_nfc_once_and_the_settings_stay_readable(tmp_path):
    from distill.tokenization import bert_normalizer, like_runtime, load_tokenizer

    tokenizer = like_runtime(load_tokenizer(cased_model(tmp_path / "cased")))
    state = json.loads(tokenizer.backend_tokenizer.to_str())["normalizer"]
    assert [n["type"] for n in state["normalizers"]] == ["BertNormalizer", "NFC"]
    settings = bert_normalizer(tokenizer)
    assert settings["type"] == "BertNormalizer" and settings["lowercase"] is False


def test_trimmed_and_extended_tokenizers_keep_composing(tmp_path):
    import numpy as np

    from distill.tokenization import load_tokenizer
    from distill.vocab_extend import tokenizer_with_tokens
    from distill.vocab_trim import trimmed_tokenizer

    tokenizer = load_tokenizer(cased_model(tmp_path / "cased"))
    kept = np.array(sorted(tokenizer.convert_tokens_to_ids(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Café", "good", "film"])))
    for derived in (trimmed_tokenizer(tokenizer, kept), tokenizer_with_tokens(tokenizer, ["Straße"])):
        assert derived.tokenize(DECOMPOSED[0]) == ["Café", "good", "film"]


def test_the_export_checks_the_runtime_tokenizer_and_records_it(tmp_path):
    """A cased model's bundle, checked on decomposed eval texts: the runtime gives the model's
    ids on every one (export.json says so), and onnxruntime and the numpy runtime agree."""
    from export.engines import bundle_predict_logits

    model_dir = cased_model(tmp_path / "cased")
    data = write_csv(tmp_path / "dev.csv", [(DECOMPOSED[0], "positive"), (DECOMPOSED[1], "negative")])
    result = CliRunner().invoke(export_group, ["onnx", str(model_dir), "--out", str(tmp_path / "b"),
                                               "--eval", str(data)])
    assert result.exit_code == 0, result.output
    assert "the numpy runtime's tokenizer gives the model's ids on all 2 texts" in result.output
    report = json.loads((tmp_path / "b" / "export.json").read_text())
    assert report["tokenizer_parity"] == {"texts": 2, "differ": 0, "first": None}
    from distill.pipeline_report import onnxruntime_predictor

    numpy = bundle_predict_logits(tmp_path / "b", DECOMPOSED, engine="numpy")
    onnx = bundle_predict_logits(tmp_path / "b", DECOMPOSED, engine="onnxruntime")
    assert abs(numpy - onnx).max() < 1e-4
    assert abs(onnxruntime_predictor(tmp_path / "b", 32)(DECOMPOSED) - numpy).max() < 1e-4


def test_an_export_whose_runtime_would_tokenize_otherwise_is_refused(tmp_path):
    """Upper-case Greek final sigma: the Rust tokenizer lower-cases per character (ΟΔΟΣ ->
    οδοσ), Python's str.lower and the runtime write the final form (οδος): with only οδοσ in
    the vocabulary, the runtime would read [UNK]. Refused, naming the text; nothing written."""
    from transformers import BertTokenizer

    model_dir = make_tiny_model(tmp_path / "greek")
    vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    (model_dir / "vocab.txt").write_text("\n".join(vocab[:-1] + ["οδοσ"]) + "\n", encoding="utf-8")
    (model_dir / "tokenizer.json").unlink(missing_ok=True)
    BertTokenizer(str(model_dir / "vocab.txt"), do_lower_case=True).save_pretrained(model_dir)
    data = write_csv(tmp_path / "dev.csv", [("good film", "positive"), ("ΟΔΟΣ bad", "negative"),
                                            ("ΟΔΟΣ good", "positive")])
    result = CliRunner().invoke(export_group, ["onnx", str(model_dir), "--out", str(tmp_path / "b"),
                                               "--eval", str(data)])
    assert result.exit_code == 1, result.output
    assert ("the numpy runtime tokenizes 2 of 3 texts differently from the model's tokenizer (first: "
            "'ΟΔΟΣ bad' is [CLS] οδοσ bad [SEP] for the model, [CLS] [UNK] bad [SEP] for the runtime") \
        in result.output
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("settings, keeps", [
    ({"lowercase": True, "strip_accents": None}, False), ({"lowercase": False, "strip_accents": None}, True),
    ({"lowercase": True, "strip_accents": False}, True), ({"lowercase": False, "strip_accents": True}, False)])
def test_keeps_accents_follows_bert_normalizer(settings, keeps):
    from distill.tokenization import keeps_accents

    assert keeps_accents(settings) is keeps
