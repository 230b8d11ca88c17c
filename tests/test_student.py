"""`distill student`: student construction, vocabulary trimming, the CLI end to end, resume."""
import copy
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

from distill.cli import main, summary
from distill.data import DataOptions, load_labelled
from distill.predict import load_model_dir, predict_logits
from distill.student import StudentConfig, StudentError, distill_student
from distill.student_model import HEAD_REINIT_REASON, build_student, even_layer_map, head_init, teacher_key
from distill.teacher import TeachConfig, checkpoint_dir_for, teach
from distill.vocab_trim import (is_single_character, kept_ids_from_counts, retokenized, token_counts, trim_vocab,
                               write_vocab_txt)
from tiny import SPECIAL, make_reviews, make_tiny_model, write_csv

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from two threads, and on a shared 2-core machine OpenMP threads
    that wait for each other make every step many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)




@pytest.fixture(scope="module")
def teacher4(tmp_path_factory):
    """A random 4-layer tiny teacher (construction tests need no training)."""
    return make_tiny_model(tmp_path_factory.mktemp("t4") / "teacher", layers=4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-layer tiny teacher fine-tuned on synthetic reviews, with its data files."""
    root = tmp_path_factory.mktemp("trained")
    train = write_csv(root / "train.csv", make_reviews(240, seed=3))
    dev = write_csv(root / "dev.csv", make_reviews(60, seed=4))
    unlabeled = root / "unlabeled.txt"
    unlabeled.write_text("".join(text + "\n" for text, _ in make_reviews(120, seed=5)), encoding="utf-8")
    base = make_tiny_model(root / "base", layers=4)
    report = teach(TeachConfig(train=str(train), eval=str(dev), model=str(base), out=str(root / "teacher"),
                               epochs=6, lr=5e-3, batch_size=16, max_length=32, progress=False, seed=0))
    assert report["final_eval"]["accuracy"] >= 0.9
    return {"teacher": root / "teacher", "train": train, "dev": dev, "unlabeled": unlabeled}


def test_even_layer_map():
    assert even_layer_map(6, 3) == [0, 2, 4]      # DistilBERT: every other layer
    assert even_layer_map(6, 2) == [0, 3]
    assert even_layer_map(4, 2) == [0, 2]
    assert even_layer_map(6, 6) == list(range(6)) and even_layer_map(6, 1) == [0]
    for bad in (0, 7):
        with pytest.raises(StudentError):
            even_layer_map(6, bad)
    assert teacher_key("bert.encoder.layer.1.output.dense.weight", [0, 3]) == "bert.encoder.layer.3.output.dense.weight"
    assert teacher_key("bert.embeddings.word_embeddings.weight", [0, 3]) == "bert.embeddings.word_embeddings.weight"


@pytest.mark.parametrize("layers,layer_map,expected", [(2, None, [0, 2]), (None, (3, 1), [3, 1]), (None, None, [0, 2])])
def test_layer_selection_copies_exactly_the_chosen_teacher_weights(teacher4, layers, layer_map, expected):
    teacher, _, _ = load_model_dir(teacher4)
    student, used, init = build_student(teacher, StudentConfig(layers=layers, layer_map=layer_map))
    assert used == expected and init == "teacher" and student.config.num_hidden_layers == len(expected)
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, value in s_state.items():
        if ".encoder.layer." in key:
            index = int(key.split(".encoder.layer.")[1].split(".")[0])
            source = key.replace(f".encoder.layer.{index}.", f".encoder.layer.{expected[index]}.")
        else:
            source = key   # embeddings, pooler, classifier
        assert torch.equal(value, t_state[source]), key
    assert {k for k in s_state if "layer." in k} and len(s_state) < len(t_state)
    assert student.config.id2label == teacher.config.id2label
    assert head_init(teacher.config, init) == {"pooler_classifier": "copied"}   # a plain teacher's head


@pytest.fixture(scope="module")
def few_shot_teacher(tmp_path_factory):
    """A `distill teach --few-shot prompt` teacher on a random 4-layer tiny encoder (no training):
    5 layers (the last one pools), a hand-set pooler and classifier, config few_shot_head."""
    root = tmp_path_factory.mktemp("few_shot")
    train = write_csv(root / "train.csv", make_reviews(40, seed=1))
    dev = write_csv(root / "dev.csv", make_reviews(24, seed=2))
    base = make_tiny_model(root / "encoder", layers=4, seed=3)
    teach(TeachConfig(train=str(train), model=str(base), out=str(root / "teacher"), few_shot="prompt", shots=4,
                      progress=False))
    return {"teacher": root / "teacher", "train": train, "dev": dev}


HEAD_KEYS = ("bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias")


def test_few_shot_teacher_head_is_reinitialised_not_copied(few_shot_teacher):
    teacher, _, _ = load_model_dir(few_shot_teacher["teacher"])
    assert teacher.config.few_shot_head == "mean-pooling" and teacher.config.num_hidden_layers == 5
    student, layer_map, init = build_student(teacher, StudentConfig(layers=2, seed=7))
    assert (layer_map, init) == ([0, 2], "teacher")
    assert "few_shot_head" not in student.config.to_dict() and not hasattr(student.config, "few_shot_head")
    assert "few_shot_head" in teacher.config.to_dict()                   # the teacher is left as it was
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, value in s_state.items():                                   # everything else is still copied
        if key not in HEAD_KEYS:
            assert torch.equal(value, t_state[teacher_key(key, layer_map)]), key
    for key in ("bert.pooler.dense.weight", "classifier.weight"):
        assert not torch.equal(s_state[key], t_state[key]), key
    assert not s_state["bert.pooler.dense.bias"].any() and not s_state["classifier.bias"].any()
    # weights ~ normal(0, initializer_range): 32*32 + 2*32 draws, so the sample std is within
    # 10% (about 5 standard errors) and the mean within 5 standard errors of 0
    weights = torch.cat([s_state["bert.pooler.dense.weight"].flatten(), s_state["classifier.weight"].flatten()])
    std = student.config.initializer_range
    assert abs(weights.std().item() / std - 1) < 0.1
    assert abs(weights.mean().item()) < 5 * std / len(weights) ** 0.5
    assert t_state["classifier.weight"].abs().max() > 100 * weights.abs().max()   # the hand-set head is extreme
    again, _, _ = build_student(teacher, StudentConfig(layers=2, seed=7))           # seeded
    assert all(torch.equal(again.state_dict()[k], s_state[k]) for k in HEAD_KEYS)
    record = head_init(teacher.config, init)
    assert record["pooler_classifier"] == "reinitialised" and record["reason"] == HEAD_REINIT_REASON
    assert record["std"] == std and record["teacher_few_shot_head"] == "mean-pooling"
    random_student, _, init = build_student(teacher, StudentConfig(layers=2, init="random"))
    assert "few_shot_head" not in random_student.config.to_dict()
    assert head_init(teacher.config, init) == {"pooler_classifier": "random"}

    # the teacher's last layer is its hand-set pooling, not an encoder layer a student may copy
    assert build_student(teacher, StudentConfig(layers=4))[1] == [0, 1, 2, 3]
    note = r"\(layer 4 of this few-shot teacher is its mean-pooling head, not an encoder layer\)"
    with pytest.raises(StudentError, match=r"--layers must be between 1 and the teacher's 4, got 5 " + note):
        build_student(teacher, StudentConfig(layers=5))
    with pytest.raises(StudentError, match=r"--layer-map: teacher has layers 0..3, not \[4\] " + note):
        build_student(teacher, StudentConfig(layer_map=(0, 4)))

    teacher.config.few_shot_head = "attention-pooling"                   # a mark this version does not know
    with pytest.raises(StudentError, match="few_shot_head 'attention-pooling'"):
        build_student(teacher, StudentConfig(layers=2))


def test_student_of_a_few_shot_teacher_is_a_plain_classifier_that_learns(few_shot_teacher, tmp_path):
    """Copied, the hand-set head sends the student's loss and logits into the thousands; re-initialised,
    the student ends below the loss of a uniform guess."""
    out = tmp_path / "student"
    config = StudentConfig(teacher=str(few_shot_teacher["teacher"]), train=str(few_shot_teacher["train"]),
                           eval=str(few_shot_teacher["dev"]), out=str(out), layers=2, augment_factor=1, epochs=2,
                           lr=3e-3, batch_size=16, cache_dir=str(tmp_path / "cache"), progress=False)
    report = distill_student(config)
    head = report["distillation"]["head"]
    assert head["pooler_classifier"] == "reinitialised" and head["reason"] == HEAD_REINIT_REASON
    saved = json.loads((out / "training.json").read_text())["distillation"]["head"]
    assert saved == head
    assert "few_shot_head" not in json.loads((out / "config.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_hidden_layers == 2
    # loss = alpha T^2 KL + (1 - alpha) CE; a uniform student has KL <= log 2 and CE = log 2 (2 classes)
    uniform = (config.alpha * config.temperature ** 2 + 1 - config.alpha) * np.log(2)
    assert np.isfinite(report["epochs"][-1]["train_loss"]) and report["epochs"][-1]["train_loss"] < uniform


def test_random_init_and_narrower_students(teacher4):
    teacher, _, _ = load_model_dir(teacher4)
    emb = "bert.embeddings.word_embeddings.weight"
    random_student, _, init = build_student(teacher, StudentConfig(layers=2, init="random"))
    assert init == "random" and not torch.equal(random_student.state_dict()[emb], teacher.state_dict()[emb])
    narrow, _, init = build_student(teacher, StudentConfig(layers=2, hidden_size=16, intermediate_size=24, heads=2))
    assert init == "random" and narrow.config.hidden_size == 16 and narrow.config.intermediate_size == 24
    assert narrow.state_dict()[emb].shape == (teacher.config.vocab_size, 16)
    with pytest.raises(StudentError, match="--init random"):
        build_student(teacher, StudentConfig(hidden_size=16, init="teacher"))
    with pytest.raises(StudentError, match="--layer-map"):
        build_student(teacher, StudentConfig(layer_map=(0, 9)))
    with pytest.raises(StudentError, match="names 2 layers"):
        build_student(teacher, StudentConfig(layers=3, layer_map=(0, 1)))


def test_trim_vocab_keeps_predictions_and_saves_a_loadable_vocab(teacher4, tmp_path):
    teacher, tokenizer, _ = load_model_dir(teacher4)
    student, _, _ = build_student(teacher, StudentConfig(layers=2))
    texts = [text for text, _ in make_reviews(30, seed=9)] + ["这部电影很好看"]
    before = predict_logits(student, tokenizer, texts, 32)
    trimmed = AutoModelForSequenceClassification.from_config(student.config)
    trimmed.load_state_dict(student.state_dict())
    new_tokenizer, report = trim_vocab(trimmed, tokenizer, texts, 32)
    assert report["vocab_after"] < report["vocab_before"] == tokenizer.vocab_size
    assert trimmed.get_input_embeddings().weight.shape[0] == report["vocab_after"] == len(new_tokenizer.get_vocab())
    np.testing.assert_allclose(predict_logits(trimmed, new_tokenizer, texts, 32), before, atol=1e-5)
    # other texts whose tokens were all kept: the same pieces, the same logits
    shuffled = [" ".join(reversed(t.split())) for t in texts[:5]]
    np.testing.assert_allclose(predict_logits(trimmed, new_tokenizer, shuffled, 32),
                               predict_logits(student, tokenizer, shuffled, 32), atol=1e-5)
    # an unseen word breaks into characters, not [UNK]
    pieces = new_tokenizer.tokenize("zebra")
    assert "zebra" not in new_tokenizer.get_vocab() and pieces == ["z", "##e", "##b", "##r", "##a"]
    assert all(t in new_tokenizer.get_vocab() for t in tokenizer.all_special_tokens)

    _check_min_count_trimming(student, tokenizer)
    _check_seen_character_trimming(student, tokenizer)
    _check_token_budget(student, tokenizer)

    out = tmp_path / "trimmed"
    trimmed.save_pretrained(out)
    new_tokenizer.save_pretrained(out)
    write_vocab_txt(new_tokenizer, out)
    lines = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == report["vocab_after"] and lines[0] == "[PAD]"
    (out / "tokenizer.json").unlink()      # AutoTokenizer now has only vocab.txt to go on
    reloaded = AutoTokenizer.from_pretrained(out)
    assert reloaded(texts)["input_ids"] == new_tokenizer(texts)["input_ids"]
    model = AutoModelForSequenceClassification.from_pretrained(out)
    np.testing.assert_allclose(predict_logits(model, reloaded, texts, 32), before, atol=1e-5)


def _copy_of(student):
    """An untrimmed copy (from_config shares the config object, which trimming changes)."""
    config = copy.deepcopy(student.config)
    config.vocab_size = student.get_input_embeddings().weight.shape[0]
    model = AutoModelForSequenceClassification.from_config(config)
    model.load_state_dict(student.state_dict())
    return model


def _check_min_count_trimming(student, tokenizer):
    """min_count=2: a word used once loses its token and splits into kept pieces; a word used
    twice keeps it; single characters and special tokens stay whatever their count."""
    texts = ["great movie", "great plot", "boring"]
    counts = {t: n for t, n in [("great", 2), ("movie", 1), ("plot", 1), ("boring", 1)]}
    assert all(t in tokenizer.get_vocab() for t in counts)
    model = _copy_of(student)
    every, _ = trim_vocab(_copy_of(student), tokenizer, texts, 32)
    frequent, report = trim_vocab(model, tokenizer, texts, 32, min_count=2)
    kept = frequent.get_vocab()
    assert report["min_count"] == 2 and report["vocab_after"] == len(every.get_vocab()) - 3
    assert "great" in kept and not {"movie", "plot", "boring"} & set(kept)
    assert frequent.tokenize("boring") == ["b", "##o", "##r", "##i", "##n", "##g"]
    assert retokenized(tokenizer, frequent, ["great great", "boring", "great plot", "a"], 32) == \
        {"texts": 4, "changed": 2, "fraction": 0.5}
    assert retokenized(tokenizer, every, texts, 32)["changed"] == 0
    assert all(t in kept for t in tokenizer.all_special_tokens)
    # the kept rows are the teacher's rows for the same tokens
    old, new = tokenizer.get_vocab(), model.get_input_embeddings().weight.detach()
    np.testing.assert_array_equal(new[kept["great"]].numpy(),
                                  student.get_input_embeddings().weight.detach()[old["great"]].numpy())
    with pytest.raises(ValueError, match="min_count"):
        trim_vocab(model, tokenizer, texts, 32, min_count=0)


def _check_seen_character_trimming(student, tokenizer):
    """characters="seen": only the single-character tokens of characters the used tokens hold stay;
    a word of those characters still splits, one with another character becomes [UNK]."""
    texts = ["great movie", "great boring"]
    model = _copy_of(student)
    trimmed, report = trim_vocab(model, tokenizer, texts, 32, min_count=2, characters="seen")
    kept = trimmed.get_vocab()
    seen = set("greatmovieboring")
    singles = {t for t in tokenizer.get_vocab() if is_single_character(t)}
    expected = {t for t in singles if t[-1] in seen} | set(tokenizer.all_special_tokens) | {"great"}
    assert set(kept) == expected and report["characters"] == "seen"
    assert report["vocab_after"] == len(expected) == model.get_input_embeddings().weight.shape[0]
    assert "z" in singles and "z" not in kept and "##z" not in kept
    assert trimmed.tokenize("boring") == ["b", "##o", "##r", "##i", "##n", "##g"]
    assert trimmed.tokenize("great tiger") == ["great", "t", "##i", "##g", "##e", "##r"]
    assert trimmed.tokenize("zebra") == ["[UNK]"]
    with pytest.raises(ValueError, match="characters"):
        trim_vocab(model, tokenizer, texts, 32, characters="some")


def _check_token_budget(student, tokenizer):
    """max_tokens: the special and single-character tokens, then the most used tokens, ties to
    the lower id, up to the budget; a budget below the always-kept tokens is refused."""
    texts = ["great great great movie movie plot boring"]
    vocab = tokenizer.get_vocab()
    singles = {t for t in vocab if is_single_character(t)}
    base = singles | set(tokenizer.all_special_tokens)
    tie_winner = min(("plot", "boring"), key=vocab.get)
    for extra, words in ((2, {"great", "movie"}), (3, {"great", "movie", tie_winner}),
                         (10, {"great", "movie", "plot", "boring"})):
        model = _copy_of(student)
        trimmed, report = trim_vocab(model, tokenizer, texts, 32, max_tokens=len(base) + extra)
        assert set(trimmed.get_vocab()) == base | words and report["max_tokens"] == len(base) + extra
        assert model.get_input_embeddings().weight.shape[0] == len(base | words)
    with pytest.raises(ValueError, match="always kept"):
        trim_vocab(_copy_of(student), tokenizer, texts, 32, max_tokens=len(base) - 1)
    # rank="vocab": the budget goes to the used words of lowest id, whatever their counts
    by_id = sorted(("great", "movie", "plot", "boring"), key=vocab.get)
    assert set(by_id[:2]) != {"great", "movie"}, "the test vocabulary must order these words apart"
    model = _copy_of(student)
    trimmed, report = trim_vocab(model, tokenizer, texts, 32, max_tokens=len(base) + 2, rank="vocab")
    assert set(trimmed.get_vocab()) == base | set(by_id[:2]) and report["rank"] == "vocab"
    with pytest.raises(ValueError, match="rank"):
        trim_vocab(_copy_of(student), tokenizer, texts, 32, max_tokens=len(base) + 2, rank="alphabet")


def test_cli_student_end_to_end(trained, tmp_path):
    out = tmp_path / "student"
    result = CliRunner().invoke(main, [
        "student", "--teacher", str(trained["teacher"]), "--train", str(trained["train"]), "--eval",
        str(trained["dev"]), "--out", str(out), "--layers", "2", "--unlabeled", str(trained["unlabeled"]),
        "--augment-factor", "1", "--trim-vocab", "--trim-characters", "seen", "--epochs", "3", "--lr", "3e-3",
        "--batch-size", "16", "--temperature", "3", "--alpha", "0.7", "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "teacher" in result.output and "retention" in result.output and "vocabulary trimmed" in result.output
    assert "distillation: T=3.0 alpha=0.7 (kl), layers [0, 2] of the teacher" in result.output
    assert f"model: {trained['teacher']} (layers [0, 2], init teacher)" in result.output
    assert re.search(r"teacher logits: labelled 240 \(scored in \d+ s\), augmented 240 \(scored in \d+ s\), "
                     r"unlabeled 120 \(scored in \d+ s\)", result.output), result.output
    report = json.loads((out / "training.json").read_text())
    d, c = report["distillation"], report["comparison"]
    assert d["teacher"] == str(trained["teacher"]) and len(d["teacher_weights_sha256"]) == 64
    assert (d["temperature"], d["alpha"], d["layer_map"], d["init"]) == (3.0, 0.7, [0, 2], "teacher")
    assert report["training_args"]["temperature"] == 3.0 and report["training_args"]["alpha"] == 0.7
    assert d["student_parameters"] < d["teacher_parameters"] == c["teacher"]["parameters"]
    assert report["data"]["rows"] == {"labelled": 240, "augmented": 240, "unlabeled": 120}
    assert report["config"]["max_length"] == 32      # the teacher's, from its training.json
    teacher_acc, student_acc = d["teacher_eval"]["accuracy"], report["final_eval"]["accuracy"]
    assert c["retention"] == pytest.approx(student_acc / teacher_acc, abs=1e-4)
    assert student_acc >= 0.85
    assert c["student"]["size_bytes"] == (out / "model.safetensors").stat().st_size
    assert c["teacher"]["size_bytes"] == (trained["teacher"] / "model.safetensors").stat().st_size
    assert c["student"]["samples_per_second"] > 0 and c["teacher"]["samples_per_second"] > 0
    assert {"train_loss", "train_loss_kd", "train_loss_ce", "accuracy", "macro_f1"} <= set(report["epochs"][0])
    assert [e["epoch"] for e in report["epochs"]] == [1, 2, 3]

    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_hidden_layers == 2 and model.config.vocab_size == d["vocab"]["vocab_after"]
    saved_vocab = (out / "vocab.txt").read_text().splitlines()
    assert len(saved_vocab) == model.config.vocab_size and d["vocab"]["characters"] == "seen"
    # --trim-characters seen: the single characters kept are those of the other kept tokens
    teacher_vocab = AutoTokenizer.from_pretrained(trained["teacher"]).get_vocab()
    singles = {t for t in teacher_vocab if is_single_character(t)}
    chars = {c for t in saved_vocab if t not in SPECIAL for c in t.removeprefix("##")}
    kept_singles = {t for t in singles if t[-1] in chars}
    assert {t for t in saved_vocab if t in singles} == kept_singles and len(kept_singles) < len(singles)
    dev_texts = load_labelled(trained["dev"]).texts
    full, kept = AutoTokenizer.from_pretrained(trained["teacher"]), AutoTokenizer.from_pretrained(out)
    changed = sum(full.tokenize(t) != kept.tokenize(t) for t in dev_texts)
    assert d["vocab"]["eval_retokenized"] == {"texts": len(dev_texts), "changed": changed,
                                              "fraction": changed / len(dev_texts)}
    assert f"{changed:,} of {len(dev_texts):,} eval texts" in result.output
    assert not checkpoint_dir_for(str(out)).exists()
    json_path = tmp_path / "eval.json"
    result = CliRunner().invoke(main, ["eval", str(out), "--data", str(trained["dev"]), "--json", str(json_path)])
    assert result.exit_code == 0, result.output
    assert json.loads(json_path.read_text())["accuracy"] == student_acc


def test_summary_of_a_random_init_student_names_no_teacher_layers():
    from distill.cli import comparison_table

    side = {"accuracy": None, "macro_f1": None, "parameters": 10, "size_bytes": 1e6, "samples_per_second": None}
    report = {"comparison": {"teacher": side, "student": side, "retention": None, "smaller_by": 1.0},
              "config": {"layers": 2},
              "distillation": {"temperature": 2.0, "alpha": 0.5, "kd_loss": "mse", "layer_map": None, "init": "random",
                               "teacher_logits": {"labelled": {"rows": 1200, "cache_hit": True, "seconds": 0.0},
                                                  "unlabeled": {"rows": 7, "cache_hit": False, "seconds": 2.4}}}}
    lines = comparison_table(report).splitlines()
    assert lines[0] == "distillation: alpha=0.5 (mse), 2 layers (random init)"      # mse uses no T
    assert lines[1] == "teacher logits: labelled 1,200 (cached), unlabeled 7 (scored in 2 s)"


def test_random_student_records_no_teacher_layer_and_auc_needs_two_eval_classes(trained, tmp_path):
    base = StudentConfig(teacher=str(trained["teacher"]), train=str(trained["train"]), out=str(tmp_path / "s"),
                         layers=1, init="random", augment_factor=0, epochs=1, batch_size=16, no_cache=True,
                         progress=False)
    one_class = write_csv(tmp_path / "one.csv", make_reviews(4, seed=3, classes=("positive",)))
    with pytest.raises(StudentError, match=r"--metric auc: ROC-AUC needs at least 2 classes in the eval rows; "
                                           r"every row of .*one\.csv is 'positive'"):
        distill_student(replace(base, eval=str(one_class), early_stopping=1, metric="auc"))
    assert not (tmp_path / "s").exists()
    report = distill_student(base)
    assert report["distillation"]["layer_map"] is None and report["config"]["layer_map"] is None
    assert report["config"]["layers"] == 1 and report["distillation"]["init"] == "random"
    assert report["model_source"] == f"{trained['teacher']} (1 layer, init random)"


def test_every_training_setting_reaches_where_it_acts(trained, tmp_path, monkeypatch):
    """Each setting observed where it acts, not echoed from the config: the Trainer's arguments
    and run (early stopping), the teacher's and the final evaluation's batches, the tokenizer's
    cut, the synonym neighbours, the kept checkpoints, the rows drawn, and the data options (a
    .data JSONL file with integer ids named by a names file)."""
    import distill.augment as augment
    import distill.predict as predict
    import distill.teacher_logits as teacher_logits
    import distill.training as training

    calls = {"score": [], "predict": [], "encode": [], "synonyms": []}
    real = {"score": teacher_logits.score_with_teacher, "predict": predict.predict_logits,
            "encode": training.encode_rows, "synonyms": augment.synonyms_for_texts}
    monkeypatch.setattr(teacher_logits, "score_with_teacher", lambda m, t, texts, length, batch, progress:
                        calls["score"].append(batch) or real["score"](m, t, texts, length, batch, progress))
    monkeypatch.setattr(predict, "predict_logits", lambda m, t, texts, length, batch, **k:
                        calls["predict"].append((length, batch)) or real["predict"](m, t, texts, length, batch, **k))
    monkeypatch.setattr(training, "encode_rows", lambda t, texts, length, **k:
                        calls["encode"].append(length) or real["encode"](t, texts, length, **k))
    monkeypatch.setattr(augment, "synonyms_for_texts", lambda texts, t, emb, neighbours:
                        calls["synonyms"].append(neighbours) or real["synonyms"](texts, t, emb, neighbours))
    names = tmp_path / "names.txt"
    names.write_text("negative\npositive\n", encoding="utf-8")
    for name, seed in (("train", 3), ("dev", 4)):
        (tmp_path / f"{name}.data").write_text("".join(json.dumps({"body": text, "y": int(label == "positive")}) + "\n"
                                                       for text, label in make_reviews(60, seed=seed)), encoding="utf-8")
    out = tmp_path / "s"
    report = distill_student(StudentConfig(
        teacher=str(trained["teacher"]), train=str(tmp_path / "train.data"), eval=str(tmp_path / "dev.data"),
        out=str(out), layers=1, augment_factor=1, augment_ops=("synonym",), synonym_neighbours=3,
        teacher_batch_size=9, eval_batch_size=7, max_length=12, max_train_samples=32, epochs=4, lr=1e-9,
        batch_size=16, weight_decay=0.2, warmup=3, logging_steps=2, early_stopping=1, metric="macro_f1",
        keep_checkpoints=True, no_cache=True, progress=False,
        data=DataOptions(format="jsonl", text_column="body", label_column="y", label_names=str(names))))
    args = report["training_args"]
    assert (args["weight_decay"], args["warmup_steps"], args["per_device_eval_batch_size"], args["logging_steps"],
            args["metric_for_best_model"], args["load_best_model_at_end"]) == (0.2, 3, 7, 2, "macro_f1", True)
    assert [e["epoch"] for e in report["epochs"]] == [1, 2]          # lr 1e-9 cannot improve: patience 1
    assert report["data"]["rows"] == {"labelled": 32, "augmented": 32, "unlabeled": 0}
    assert calls["score"] == [9, 9] and calls["synonyms"] == [3]      # labelled, then augmented texts
    # the teacher's two scoring passes, then a warm-up and a timed pass for each of teacher and student
    assert set(calls["encode"]) == {12} and calls["predict"] == [(12, 9), (12, 9)] + [(12, 7)] * 4
    assert (checkpoint_dir_for(str(out)) / "checkpoint-4").is_dir()  # --keep-checkpoints


def test_back_translations_are_transfer_texts_and_the_cache_goes_where_it_is_told(trained, tmp_path, monkeypatch):
    """--back-translate FWD,BWD: one round trip per training text joins the texts the teacher
    labels (the translation itself is tested in test_augment); --cache-dir is where the teacher's
    logits are kept, and --no-cache keeps none, not even in $DISTILL_CACHE_DIR."""
    import distill.augment as augment
    import distill.teacher_logits as teacher_logits

    trips, scored = [], []
    monkeypatch.setattr(augment, "back_translate", lambda texts, fwd, bwd, batch_size:
                        trips.append((fwd, bwd, batch_size)) or [text + " indeed" for text in texts])
    real_score = teacher_logits.score_with_teacher
    monkeypatch.setattr(teacher_logits, "score_with_teacher", lambda *a, **k: scored.append(list(a[2])) or real_score(*a, **k))
    models = []
    for name in ("fwd", "bwd"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        (tmp_path / name / "model.safetensors").write_bytes(name.encode())   # hashed into the cache key
        models.append(str(tmp_path / name))
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(tmp_path / "default-cache"))
    base = StudentConfig(teacher=str(trained["teacher"]), train=str(trained["train"]), out=str(tmp_path / "s"),
                         back_translate=tuple(models), augment_factor=0, teacher_batch_size=11, layers=1,
                         epochs=1, batch_size=16, cache_dir=str(tmp_path / "cache"), progress=False)
    report = distill_student(base)
    train_texts = load_labelled(trained["train"]).texts
    assert trips == [(models[0], models[1], 11)]
    assert report["data"]["rows"] == {"labelled": 240, "augmented": 240, "unlabeled": 0}
    assert scored == [train_texts, [text + " indeed" for text in train_texts]]
    assert any((tmp_path / "cache").rglob("*")) and not (tmp_path / "default-cache").exists()
    distill_student(replace(base, out=str(tmp_path / "n"), cache_dir=None, no_cache=True))
    assert not (tmp_path / "default-cache").exists() and len(scored) == 4      # scored again: nothing cached


def _always_kept_ids(tokenizer) -> set[int]:
    """The special and single-character tokens: kept whatever the budget."""
    return set(tokenizer.all_special_ids) | {i for t, i in tokenizer.get_vocab().items() if is_single_character(t)}


def test_cli_token_budget_in_vocabulary_order(trained, tmp_path):
    """--trim-max-tokens with --trim-rank vocab: the saved vocabulary is the always-kept tokens plus
    the used words of lowest id, which here is not the most used ones; training.json records it."""
    full = AutoTokenizer.from_pretrained(trained["teacher"])
    counts = token_counts(full, load_labelled(trained["train"]).texts, 32)
    budget = len(_always_kept_ids(full)) + 10
    by_vocab = kept_ids_from_counts(full, counts, max_tokens=budget, rank="vocab")
    assert len(by_vocab) == budget and set(by_vocab) != set(kept_ids_from_counts(full, counts, max_tokens=budget))
    out = tmp_path / "student"
    result = CliRunner().invoke(main, [
        "student", "--teacher", str(trained["teacher"]), "--train", str(trained["train"]), "--out", str(out),
        "--augment-factor", "0", "--epochs", "1", "--trim-vocab", "--trim-max-tokens", str(budget),
        "--trim-rank", "vocab", "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 0, result.output
    vocab = json.loads((out / "training.json").read_text())["distillation"]["vocab"]
    assert (vocab["rank"], vocab["max_tokens"], vocab["vocab_after"]) == ("vocab", budget, budget)
    saved = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert saved == full.convert_ids_to_tokens([int(i) for i in by_vocab])


def test_cli_trim_after_training_trims_the_model_trained_on_the_full_vocabulary(trained, tmp_path):
    """--trim-after-training: the same training as without --trim-vocab, then the kept rows of the
    final model; the final evaluation is the trimmed model's."""
    full = AutoTokenizer.from_pretrained(trained["teacher"])
    counts = token_counts(full, load_labelled(trained["train"]).texts, 32)
    budget = len(_always_kept_ids(full)) + 10     # fewer than the training texts use: some are dropped
    assert len(kept_ids_from_counts(full, counts)) > budget
    base = ["student", "--teacher", str(trained["teacher"]), "--train", str(trained["train"]), "--eval",
            str(trained["dev"]), "--augment-factor", "0", "--epochs", "2", "--lr", "3e-3",
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    runner = CliRunner()
    result = runner.invoke(main, base + ["--out", str(tmp_path / "untrimmed")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, base + ["--out", str(tmp_path / "after"), "--trim-vocab", "--trim-max-tokens",
                                         str(budget), "--trim-after-training"])
    assert result.exit_code == 0, result.output
    untrimmed = AutoModelForSequenceClassification.from_pretrained(tmp_path / "untrimmed").state_dict()
    after = AutoModelForSequenceClassification.from_pretrained(tmp_path / "after").state_dict()
    kept = kept_ids_from_counts(full, counts, max_tokens=budget)
    assert (tmp_path / "after" / "vocab.txt").read_text(encoding="utf-8").splitlines() == \
        full.convert_ids_to_tokens([int(i) for i in kept])
    rows = "bert.embeddings.word_embeddings.weight"
    torch.testing.assert_close(after[rows], untrimmed[rows][torch.as_tensor(kept)], rtol=0, atol=0)
    for name in untrimmed.keys() - {rows}:
        torch.testing.assert_close(after[name], untrimmed[name], rtol=0, atol=0)
    report = json.loads((tmp_path / "after" / "training.json").read_text())
    assert report["distillation"]["vocab"]["after_training"] is True
    assert report["distillation"]["vocab"]["vocab_after"] == budget == report["config"]["trim_max_tokens"]
    model, tokenizer, labels = load_model_dir(tmp_path / "after")
    dev = load_labelled(trained["dev"], labels=labels)
    accuracy = float((predict_logits(model, tokenizer, dev.texts, 32).argmax(1) == np.asarray(dev.labels)).mean())
    assert report["final_eval"]["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert report["parameters"] == sum(p.numel() for p in model.parameters())


def test_cli_rejects_bad_settings(trained, tmp_path):
    runner = CliRunner()
    base = ["student", "--teacher", str(trained["teacher"]), "--train", str(trained["train"]), "--out",
            str(tmp_path / "x"), "--quiet", "--cache-dir", str(tmp_path / "cache")]
    for extra, message in ((["--layer-map", "0,a"], "comma-separated integers"),
                           (["--layers", "9"], "--layers must be between 1"),
                           (["--early-stopping", "1"], "--early-stopping needs --eval"),
                           (["--augment-ops", "shuffle"], "--augment-ops: unknown augmentation op(s) shuffle"),
                           (["--augment-factor", "-1"], "--augment-factor must be at least 0, got -1"),
                           (["--augment-rate", "0"], "--augment-rate must be in (0, 1], got 0.0"),
                           (["--synonym-neighbours", "0"], "--synonym-neighbours must be at least 1, got 0"),
                           (["--hidden-size", "16", "--init", "teacher"], "--init random"),
                           (["--kd-loss", "mse", "--temperature", "5"], "--temperature: not used by --kd-loss mse"),
                           (["--init", "random", "--layer-map", "0,1"], "a random-init student copies none"),
                           (["--hidden-size", "16", "--heads", "2", "--layer-map", "0,1"], "copies none"),
                           (["--augment-ops", "delete,swap", "--synonym-neighbours", "3"],
                            "--synonym-neighbours only acts with the synonym or insert"),
                           (["--ensemble-teacher", str(trained["teacher"])], "is --teacher itself"),
                           (["--back-translate", "only-one"], "FORWARD_MODEL,BACKWARD_MODEL"),
                           (["--trim-min-count", "2"], "only with --trim-vocab"),
                           (["--trim-vocab", "--trim-min-count", "0"], "--trim-min-count"),
                           (["--trim-characters", "seen"], "seen only with --trim-vocab"),
                           (["--trim-max-tokens", "500"], "only with --trim-vocab"),
                           # the budget is checked against the augmented texts too, which the
                           # teacher pass makes: its own cache, outside the check below
                           (["--trim-vocab", "--trim-max-tokens", "3", "--cache-dir", str(tmp_path / "c2")],
                            "always kept"),
                           (["--trim-vocab", "--trim-rank", "vocab"], "vocab only with --trim-max-tokens"),
                           (["--trim-after-training"], "only for --trim-vocab"),
                           (["--ensemble-teacher", str(trained["train"].parent)], "--ensemble-teacher"),
                           (["--teacher-batch-size", "0"], "--teacher-batch-size must be at least 1, got 0"),
                           (["--max-unlabeled", "5"], "--max-unlabeled only acts with --unlabeled"),
                           (["--unlabeled", str(trained["train"]), "--max-unlabeled", "-1"],
                            "--max-unlabeled must be at least 1, got -1"),
                           (["--no-cache"], "--cache-dir with --no-cache"),
                           (["--metric", "loss"], "--metric only acts with --early-stopping"),
                           (["--augment-factor", "0", "--augment-rate", "0.3"],
                            "--augment-rate only acts with --augment-factor above 0"),
                           (["--warmup", "-0.5"], "--warmup must be at least 0, got -0.5"),
                           (["--alpha", "2"], "--alpha must be in [0, 1], got 2.0"),
                           (["--temperature", "0"], "--temperature must be > 0, got 0.0"),
                           (["--epochs", "0"], "--epochs must be > 0, got 0.0"),
                           (["--max-length", "1"], "--max-length must be at least 2, got 1"),
                           (["--max-length", "129"], "--max-length 129 is longer than"),
                           (["--layer-map", "0,7"], "teacher has layers 0..3, not [7]"),
                           (["--hidden-size", "30", "--heads", "4"], "is not a multiple of --heads 4"),
                           (["--seed", "-1"], "--seed -1: must be in 0..4294967295"),
                           (["--heads", "0"], "--heads must be at least 1, got 0"),
                           (["--hidden-size", "0"], "--hidden-size must be at least 1, got 0"),
                           (["--intermediate-size", "0"], "--intermediate-size must be at least 1, got 0"),
                           (["--layers", "0"], "--layers must be at least 1, got 0"),
                           (["--shots", "0", "--alpha", "0.5"], "--shots 0 keeps no labelled row: give --unlabeled"),
                           # with --shots 0 these act on nothing, named at their default values too
                           (["--shots", "0", "--unlabeled", str(trained["train"]), "--alpha", "0.5"],
                            "--alpha: no labelled row to weigh or augment with --shots 0"),
                           (["--shots", "0", "--unlabeled", str(trained["train"]), "--augment-factor",
                             str(StudentConfig().augment_factor)], "--augment-factor: no labelled row")):
        result = runner.invoke(main, base + extra)
        assert result.exit_code != 0 and message in result.output, (extra, result.output)
        assert "Traceback" not in result.output, extra
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.checkpoints").exists()
    # a student shape or length that cannot work is refused before the teacher scores anything
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    result = runner.invoke(main, ["student", "--teacher", str(tmp_path), "--train", str(trained["train"]),
                                  "--out", str(tmp_path / "y")])
    assert result.exit_code != 0 and "no config.json" in result.output


class Interrupt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 17:
            raise KeyboardInterrupt("simulated kill")


class StepCounter(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)

    @property
    def taken(self):
        """[first, last] global step this run trained."""
        return [self.steps[0], self.steps[-1]] if self.steps else []


@pytest.mark.parametrize("trim", [{}, {"trim_vocab": True, "trim_min_count": 10},
                                  {"trim_vocab": True, "trim_min_count": 10, "trim_after_training": True}],
                         ids=["full-vocabulary", "trimmed-before", "trimmed-after"])
def test_interrupted_student_resumes_from_its_checkpoint(trained, tmp_path, trim):
    """Resuming works whether the checkpoint holds the trimmed model (trimmed before training) or
    the untrimmed one (--trim-after-training, trimmed once training is done)."""
    config = StudentConfig(teacher=str(trained["teacher"]), train=str(trained["train"]), out=str(tmp_path / "s"),
                           layers=1, augment_factor=0, epochs=2, lr=3e-3, batch_size=16,
                           cache_dir=str(tmp_path / "cache"), progress=False, **trim)   # 240 rows: 15 steps an epoch
    with pytest.raises(KeyboardInterrupt):
        distill_student(config, callbacks=[Interrupt()])
    assert not (tmp_path / "s").exists() and (checkpoint_dir_for(config.out) / "checkpoint-15").is_dir()
    with pytest.raises(StudentError, match=r"other settings \(alpha 0\.5 -> 0\.9; temperature 2\.0 -> 5\.0\)"):
        distill_student(replace(config, resume=True, alpha=0.9, temperature=5.0))
    steps = StepCounter()
    report = distill_student(replace(config, resume=True), callbacks=[steps])
    assert report["resumed_from"].endswith("checkpoint-15") and [e["epoch"] for e in report["epochs"]] == [1, 2]
    assert steps.taken == [16, 30]              # it continued from step 15: only epoch 2 was trained
    assert report["distillation"]["teacher_logits"]["labelled"]["cache_hit"]
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s")
    assert model.config.num_hidden_layers == 1
    teacher_vocab = AutoTokenizer.from_pretrained(trained["teacher"]).vocab_size
    assert model.config.vocab_size == (report["distillation"]["vocab"]["vocab_after"] if trim else teacher_vocab)
    assert (model.config.vocab_size < teacher_vocab) == bool(trim)
    if trim:      # --trim-min-count 10: the tokens the training texts use 10 times or more (and the always-kept)
        tokenizer = AutoTokenizer.from_pretrained(trained["teacher"])
        counts = token_counts(tokenizer, load_labelled(trained["train"]).texts, 32)
        assert model.config.vocab_size == len(kept_ids_from_counts(tokenizer, counts, 10)) \
            < len(kept_ids_from_counts(tokenizer, counts, 1))


def test_a_fresh_run_stopped_before_its_first_save_leaves_no_checkpoints(trained, tmp_path, monkeypatch):
    """A fresh run replaces an interrupted run's checkpoints as it starts; stopped before its own
    first save (here in the teacher's scoring pass), it leaves no OUT.checkpoints holding only its
    run_settings.json. A run that fails before replacing them keeps the earlier checkpoints."""
    import distill.student as student_module

    config = StudentConfig(teacher=str(trained["teacher"]), train=str(trained["train"]), out=str(tmp_path / "s"),
                           layers=1, augment_factor=0, epochs=2, lr=3e-3, batch_size=16, no_cache=True,
                           progress=False)                                   # 240 rows: 15 steps an epoch
    checkpoints = checkpoint_dir_for(config.out)
    with pytest.raises(KeyboardInterrupt):
        distill_student(config, callbacks=[Interrupt()])
    assert (checkpoints / "checkpoint-15").is_dir()
    with pytest.raises(StudentError, match="not a model directory"):     # fails before replacing them
        distill_student(replace(config, teacher=str(tmp_path)))
    assert (checkpoints / "checkpoint-15").is_dir()

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(student_module, "teacher_parts", stop)
    with pytest.raises(KeyboardInterrupt):
        distill_student(replace(config, lr=1e-3))
    assert not checkpoints.exists() and not (tmp_path / "s").exists()


def test_mse_loss_and_a_sample_of_the_unlabelled_texts(trained, tmp_path, monkeypatch):
    """--kd-loss mse reaches the loss; --max-unlabeled 7 keeps 7 distinct texts of the file, the
    only unlabelled texts the teacher scores."""
    import distill.teacher_logits as teacher_logits
    import distill.trainer as trainer

    kinds, scored = [], []
    unlabeled_file = tmp_path / "unlabeled.txt"                 # the fixture's 120 texts and one bad line
    unlabeled_file.write_bytes(trained["unlabeled"].read_bytes() + b"\xff not UTF-8\n")
    real_loss, real_score = trainer.distillation_loss, teacher_logits.score_with_teacher
    monkeypatch.setattr(trainer, "distillation_loss", lambda *a: kinds.append(a[5]) or real_loss(*a))
    monkeypatch.setattr(teacher_logits, "score_with_teacher", lambda *a, **k: scored.append(list(a[2])) or real_score(*a, **k))
    config = StudentConfig(teacher=str(trained["teacher"]), train=str(trained["train"]), out=str(tmp_path / "s"),
                           unlabeled=str(unlabeled_file), max_unlabeled=7, kd_loss="mse", layers=1,
                           augment_factor=0, epochs=1, batch_size=16, no_cache=True, progress=False,
                           data=DataOptions(skip_bad_rows=True))
    report = distill_student(config)
    assert report["training_args"]["kd_loss"] == "mse" and report["distillation"]["kd_loss"] == "mse"
    assert kinds and set(kinds) == {"mse"}
    unlabeled = trained["unlabeled"].read_text(encoding="utf-8").splitlines()
    assert report["data"]["rows"] == {"labelled": 240, "augmented": 0, "unlabeled": 7}
    assert report["data"]["unlabeled"] == {
        "path": str(unlabeled_file), "sha256": hashlib.sha256(unlabeled_file.read_bytes()).hexdigest(),
        "file_rows": 120, "rows": 7, "skipped": {"invalid UTF-8": 1}}
    assert f"unlabeled ({unlabeled_file}): skipped 1 row: 1 invalid UTF-8" in summary(report, config.out)
    assert sorted(len(texts) for texts in scored) == [7, 240]
    sample = next(texts for texts in scored if len(texts) == 7)
    assert len(set(sample)) == 7 and set(sample) <= set(unlabeled)


def test_torchrun_two_processes(trained, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",   # a free port
           "-m", "distill.cli", "student", "--teacher", str(trained["teacher"]), "--train", str(trained["train"]),
           "--eval", str(trained["dev"]), "--out", str(out), "--epochs", "1", "--batch-size", "8",
           "--augment-factor", "1", "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "training.json").read_text())
    assert report["world_size"] == 2 and report["final_eval"]["n"] == 60
    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_hidden_layers == 2


def test_unlabelled_txt_is_one_text_per_line_whatever_the_text_column(tmp_path):
    from distill.data import load_texts
    from distill.data import unlabeled_options

    txt = tmp_path / "unlabeled.txt"
    txt.write_text("a gripping film\n\nthe plot was dull\n", encoding="utf-8")
    options = DataOptions(text_column="sentence")
    assert load_texts(txt, unlabeled_options(txt, options)) == ["a gripping film", "the plot was dull"]
    tsv = write_csv(tmp_path / "unlabeled.tsv", [("fine acting",)], header=("sentence",), delimiter="\t")
    assert unlabeled_options(tsv, options) == options and load_texts(tsv, options) == ["fine acting"]


def _shifted_copy(teacher: Path, target: Path, shift: list[float]) -> Path:
    """A copy of the teacher whose classifier bias is moved by `shift`: its logits are the
    teacher's plus `shift` on every text."""
    import shutil

    shutil.copytree(teacher, target)
    model = AutoModelForSequenceClassification.from_pretrained(target)
    with torch.no_grad():
        model.classifier.bias += torch.tensor(shift)
    model.save_pretrained(target)
    return target


def test_ensemble_teachers_logits_are_averaged_and_cached(trained, tmp_path, monkeypatch):
    import distill.training as training

    member = _shifted_copy(trained["teacher"], tmp_path / "member", [3.0, -1.0])
    captured = {}
    real_encode = training.encode_rows

    def capture(tokenizer, texts, max_length, **extras):
        if "teacher_logits" in extras:
            captured["texts"], captured["logits"] = list(texts), np.asarray(extras["teacher_logits"])
        return real_encode(tokenizer, texts, max_length, **extras)

    monkeypatch.setattr(training, "encode_rows", capture)
    config = StudentConfig(teacher=str(trained["teacher"]), ensemble=(str(member),), train=str(trained["train"]),
                           eval=str(trained["dev"]), out=str(tmp_path / "s1"), unlabeled=str(trained["unlabeled"]),
                           augment_factor=0, layers=2, epochs=1, batch_size=32, cache_dir=str(tmp_path / "cache"),
                           progress=False)
    report = distill_student(config)
    teacher, tokenizer, _ = load_model_dir(str(trained["teacher"]))
    own = predict_logits(teacher, tokenizer, captured["texts"], 32)
    assert len(captured["texts"]) == 240 + 120
    np.testing.assert_allclose(captured["logits"], own + np.array([1.5, -0.5]), atol=1e-4)   # (t + (t + s)) / 2

    ensemble = report["distillation"]["ensemble"]
    assert [m["teacher"] for m in ensemble["members"]] == [str(member)]
    assert set(ensemble["members"][0]["teacher_logits"]) == {"labelled", "unlabeled"}
    assert not any(p["cache_hit"] for p in ensemble["members"][0]["teacher_logits"].values())
    from distill.data import load_labelled
    from distill.metrics import evaluate
    from distill.predict import softmax
    dev = load_labelled(trained["dev"], labels=report["labels"])
    mean = predict_logits(teacher, tokenizer, dev.texts, 32) + np.array([1.5, -0.5])
    want = evaluate(np.asarray(dev.labels), softmax(mean), report["labels"])["accuracy"]
    assert ensemble["eval"]["accuracy"] == pytest.approx(want)
    assert ensemble["student_retention"] == pytest.approx(report["final_eval"]["accuracy"] / want, abs=1e-4)

    again = distill_student(replace(config, out=str(tmp_path / "s2")))    # every teacher's logits cached
    assert all(p["cache_hit"] for p in again["distillation"]["ensemble"]["members"][0]["teacher_logits"].values())
    assert all(p["cache_hit"] for p in again["distillation"]["teacher_logits"].values())


def test_ensemble_teacher_must_read_the_max_length(trained, tmp_path, monkeypatch):
    """A member with fewer positions than --max-length is refused before any teacher scores."""
    import distill.teacher_logits as teacher_logits

    short = make_tiny_model(tmp_path / "short", max_positions=16)
    monkeypatch.setattr(teacher_logits, "score_with_teacher",
                        lambda *a, **k: pytest.fail("a teacher scored texts before the check"))
    config = StudentConfig(teacher=str(trained["teacher"]), ensemble=(str(short),), train=str(trained["train"]),
                           out=str(tmp_path / "s"), max_length=32, layers=1, no_cache=True, progress=False)
    with pytest.raises(StudentError, match=f"--max-length 32 is longer than --ensemble-teacher {short} can read: "
                                           "it has 16 positions"):
        distill_student(config)


def test_ensemble_teacher_must_share_the_labels(trained, tmp_path):
    member = _shifted_copy(trained["teacher"], tmp_path / "member", [0.0, 0.0])
    config_file = member / "config.json"
    config = json.loads(config_file.read_text())
    config["id2label"] = {"0": "positive", "1": "negative"}
    config["label2id"] = {"positive": 0, "negative": 1}
    config_file.write_text(json.dumps(config))
    base = StudentConfig(teacher=str(trained["teacher"]), ensemble=(str(member),), train=str(trained["train"]),
                         out=str(tmp_path / "s"), augment_factor=0, progress=False, no_cache=True)
    with pytest.raises(StudentError, match="labels .* are not --teacher's"):
        distill_student(base)
    with pytest.raises(StudentError, match="no teacher logits to average"):
        distill_student(replace(base, ensemble=(str(_shifted_copy(trained["teacher"], tmp_path / "other", [0.0, 0.0])),),
                                alpha=0.0))
    assert not (tmp_path / "s").exists()
