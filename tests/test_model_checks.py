"""A checkpoint the edge bundle cannot hold is refused before any training, by every command that
starts from one (teach, few-shot teach, student, pipeline), and eval names a non-classifier."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from distill.cli import main
from tiny import make_reviews, make_tiny_model, write_csv, write_vocab


def distilbert_model(out_dir) -> Path:
    """A tiny DistilBERT classifier with a WordPiece tokenizer: it takes no token_type_ids."""
    import torch
    from transformers import BertTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    out = Path(out_dir)
    out.mkdir(parents=True)
    vocab = write_vocab(out / "vocab.txt")
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=1, n_heads=2, hidden_dim=37,
                              max_position_embeddings=128, id2label={0: "negative", 1: "positive"},
                              label2id={"negative": 0, "positive": 1})
    DistilBertForSequenceClassification(config).save_pretrained(out)
    BertTokenizer(str(out / "vocab.txt")).save_pretrained(out)
    return out


def without_token(model_dir, token: str) -> Path:
    """The tiny model with `token` replaced in vocab.txt by a plain word (same vocabulary size)."""
    from transformers import BertTokenizer

    vocab = Path(model_dir) / "vocab.txt"
    vocab.write_text(vocab.read_text(encoding="utf-8").replace(f"{token}\n", "zzz\n"), encoding="utf-8")
    (Path(model_dir) / "tokenizer.json").unlink(missing_ok=True)
    BertTokenizer(str(vocab)).save_pretrained(model_dir)
    return Path(model_dir)


@pytest.fixture
def bad_train(tmp_path):
    """A training file with a bad row: a check made after the data is read would name it instead."""
    path = tmp_path / "train.csv"
    path.write_text("text,label\ngood film,positive\n,negative\n", encoding="utf-8")
    return path


def teach(model, train, out, *extra):
    return CliRunner().invoke(main, ["teach", "--model", str(model), "--train", str(train), "--out", str(out),
                                     "--max-length", "32", "--quiet", *extra])


def test_teach_refuses_a_model_without_token_type_ids_before_reading_the_data(tmp_path, bad_train):
    model = distilbert_model(tmp_path / "distilbert")
    result = teach(model, bad_train, tmp_path / "t")
    assert result.exit_code == 1, result.output
    assert (f"{model}: a distilbert model (DistilBertForSequenceClassification) takes no token_type_ids; "
            "the edge bundle feeds input_ids, attention_mask and token_type_ids") in result.output
    assert not (tmp_path / "t").exists() and not (tmp_path / "t.checkpoints").exists()


@pytest.mark.parametrize("token, key", [("[SEP]", "sep_token"), ("[UNK]", "unk_token"), ("[PAD]", "pad_token"),
                                        ("[CLS]", "cls_token")])
def test_teach_names_a_special_token_the_vocabulary_lacks(tiny_model_dir, tmp_path, bad_train, token, key):
    """Without [SEP] transformers appended one past the embeddings (an IndexError mid-training);
    without [UNK], a WordPiece error while encoding."""
    without_token(tiny_model_dir, token)
    result = teach(tiny_model_dir, bad_train, tmp_path / "t")
    assert result.exit_code == 1, result.output
    assert (f"{tiny_model_dir}: the vocabulary (vocab.txt) has no {key} {token!r}, which every BERT input "
            "needs") in result.output
    assert not (tmp_path / "t.checkpoints").exists()


def test_teach_refuses_a_vocabulary_larger_than_the_embeddings(tiny_model_dir, tmp_path, bad_train):
    from transformers import BertTokenizer

    vocab = tiny_model_dir / "vocab.txt"
    rows = len(vocab.read_text(encoding="utf-8").split("\n")) - 1
    vocab.write_text(vocab.read_text(encoding="utf-8") + "extraword\n", encoding="utf-8")
    (tiny_model_dir / "tokenizer.json").unlink()
    BertTokenizer(str(vocab)).save_pretrained(tiny_model_dir)
    result = teach(tiny_model_dir, bad_train, tmp_path / "t")
    assert result.exit_code == 1, result.output
    assert (f"the vocabulary (vocab.txt) has ids up to {rows}, but the model's embeddings have {rows} rows "
            "(config.json vocab_size)") in result.output


def test_few_shot_teach_checks_the_checkpoint_too(tmp_path, bad_train):
    model = distilbert_model(tmp_path / "distilbert")
    result = teach(model, bad_train, tmp_path / "t", "--few-shot", "prompt")
    assert result.exit_code == 1, result.output
    assert "takes no token_type_ids" in result.output


def test_student_refuses_a_teacher_that_is_not_a_classifier_or_not_bert(tmp_path):
    train = write_csv(tmp_path / "train.csv", make_reviews(8, seed=1))
    masked_lm = make_tiny_model(tmp_path / "mlm", mlm=True)
    result = CliRunner().invoke(main, ["student", "--teacher", str(masked_lm), "--train", str(train),
                                       "--out", str(tmp_path / "s"), "--quiet"])
    assert result.exit_code == 1, result.output
    assert f"Error: --teacher {masked_lm}: not a sequence classifier (architectures: ['BertForMaskedLM'])" \
        in result.output
    distilbert = distilbert_model(tmp_path / "distilbert")
    result = CliRunner().invoke(main, ["student", "--teacher", str(distilbert), "--train", str(train),
                                       "--out", str(tmp_path / "s"), "--quiet"])
    assert result.exit_code == 1, result.output
    assert "takes no token_type_ids" in result.output and not (tmp_path / "s").exists()


def test_eval_names_a_model_that_is_not_a_classifier(tmp_path):
    """A masked LM saved without label names: eval used to read its labels first and blame the
    data ("unknown label 'positive' ... (known labels: )")."""
    import json

    data = write_csv(tmp_path / "dev.csv", make_reviews(4, seed=1))
    masked_lm = make_tiny_model(tmp_path / "mlm", mlm=True)
    config = json.loads((masked_lm / "config.json").read_text())
    for key in ("id2label", "label2id"):
        config.pop(key, None)
    (masked_lm / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(main, ["eval", str(masked_lm), "--data", str(data)])
    assert result.exit_code == 1, result.output
    assert f"Error: {masked_lm}: not a sequence classifier (architectures: ['BertForMaskedLM'])" in result.output


def test_pipeline_refuses_the_base_model_before_any_stage(tmp_path):
    model = distilbert_model(tmp_path / "distilbert")
    train = write_csv(tmp_path / "train.csv", make_reviews(8, seed=1))
    dev = write_csv(tmp_path / "dev.csv", make_reviews(4, seed=2))
    toml = tmp_path / "p.toml"
    toml.write_text(f'train = "{train}"\neval = "{dev}"\nout = "{tmp_path / "out"}"\n'
                    f'[teach]\nmodel = "{model}"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["pipeline", "--config", str(toml)])
    assert result.exit_code == 1, result.output
    assert f"Error: teach.model: {model}: a distilbert model" in result.output
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- a classifier checkpoint's head

def classifier(out_dir, labels) -> Path:
    """make_tiny_model's classifier with the given labels and a head that decides (scaled up)."""
    import torch
    from transformers import BertForSequenceClassification

    out = make_tiny_model(out_dir, labels=labels)
    model = BertForSequenceClassification.from_pretrained(out)
    with torch.no_grad():
        model.classifier.weight.mul_(100)
        model.classifier.bias.copy_(torch.arange(len(labels), dtype=torch.float32))
    model.save_pretrained(out)
    return out


def head_of(model):
    return model.classifier.weight.detach().clone(), model.classifier.bias.detach().clone()


@pytest.mark.parametrize("checkpoint_labels, ours, rows, renewed, said", [
    (("negative", "positive"), ["negative", "positive"], [0, 1], False, "kept from the checkpoint (the same labels)"),
    (("positive", "neutral", "negative"), ["negative", "neutral", "positive"], [2, 1, 0], False,
     "kept from the checkpoint, rows reordered by label name (it had positive, neutral, negative)"),
    (("LABEL_0", "LABEL_1"), ["negative", "positive"], [0, 1], False,
     "kept from the checkpoint by position: its labels are unnamed (LABEL_0, LABEL_1), so negative, "
     "positive take them in that order"),
    (("entailment", "neutral", "contradiction"), ["negative", "neutral", "positive"], None, True,
     "new: the checkpoint's labels (entailment, neutral, contradiction) are not these")])
def test_a_classifier_checkpoints_head_is_matched_by_label_name(tmp_path, checkpoint_labels, ours, rows, renewed,
                                                                said):
    """transformers alone keeps the head row for row by position: a positive/neutral/negative
    sentiment model taught negative/neutral/positive data swapped every prediction, and an NLI
    head decided sentiment, with no new weight reported."""
    from transformers import AutoModelForSequenceClassification

    from distill.teacher import load_teacher_model

    source = classifier(tmp_path / "ckpt", checkpoint_labels)
    weight, bias = head_of(AutoModelForSequenceClassification.from_pretrained(source))
    model, _, new_weights, head = load_teacher_model(str(source), ours, None, seed=0)
    assert head == said
    got_weight, got_bias = head_of(model)
    if renewed:
        assert new_weights == ["classifier.bias", "classifier.weight"]
        assert got_bias.abs().max() == 0 and got_weight.std() < 0.1        # drawn as BERT initialises
        again = load_teacher_model(str(source), ours, None, seed=0)[0]
        assert head_of(again)[0].equal(got_weight)                         # seeded
    else:
        assert new_weights == [] and got_weight.equal(weight[rows]) and got_bias.equal(bias[rows])
    assert model.config.id2label == dict(enumerate(ours))


def test_teach_summary_and_training_json_say_what_became_of_the_head(tmp_path):
    import json

    source = classifier(tmp_path / "ckpt", ("positive", "negative"))
    train = write_csv(tmp_path / "train.csv", make_reviews(8, seed=1))
    result = teach(source, train, tmp_path / "t", "--epochs", "1")
    assert result.exit_code == 0, result.output
    said = "kept from the checkpoint, rows reordered by label name (it had positive, negative)"
    assert f"classifier head: {said}" in result.output
    assert json.loads((tmp_path / "t" / "training.json").read_text())["classifier_head"] == said


def test_export_makes_the_same_checks_on_a_classifier_it_is_given(tmp_path, tiny_model_dir):
    """A user's own classifier goes straight to export: DistilBERT, or a vocabulary without
    [SEP] (a bundle the runtime would refuse to load), is refused before anything is written."""
    from export.cli import export_group

    for model, said in ((distilbert_model(tmp_path / "distilbert"), "takes no token_type_ids"),
                        (without_token(tiny_model_dir, "[SEP]"), "the vocabulary (vocab.txt) has no sep_token '[SEP]'")):
        result = CliRunner().invoke(export_group, ["onnx", str(model), "--out", str(tmp_path / "b")])
        assert result.exit_code == 1 and said in result.output, result.output
        assert not (tmp_path / "b").exists()
