"""`distill teach` and `distill eval` on tiny local models."""
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, TrainerCallback

from distill.cli import main, summary
from distill.data import DataOptions
from distill.teacher import TeachConfig, TeachError, checkpoint_dir_for, teach
from tiny import make_reviews, make_tiny_model, write_csv

ROOT = Path(__file__).resolve().parent.parent


def config(tiny_model_dir, train, dev, out, **overrides):
    base = TeachConfig(train=str(train), eval=str(dev) if dev else None, model=str(tiny_model_dir),
                       out=str(out), epochs=2, lr=3e-3, batch_size=16, max_length=32, logging_steps=5,
                       progress=False, seed=0)
    return replace(base, **overrides)


def weights(model_dir) -> dict:
    return load_file(str(Path(model_dir) / "model.safetensors"))


def test_cli_teach_then_eval_reports_the_same_accuracy(tiny_model_dir, reviews_csv, tmp_path):
    train, dev = reviews_csv
    out = tmp_path / "teacher"
    runner = CliRunner()
    result = runner.invoke(main, ["teach", "--train", str(train), "--eval", str(dev), "--model",
                                  str(tiny_model_dir), "--out", str(out), "--epochs", "3", "--lr", "3e-3",
                                  "--batch-size", "16", "--max-length", "32", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "confusion matrix" in result.output
    report = json.loads((out / "training.json").read_text())
    assert report["labels"] == ["negative", "positive"]
    assert [e["epoch"] for e in report["epochs"]] == [1, 2, 3]
    assert {"train_loss", "eval_loss", "accuracy", "macro_f1", "auc"} <= set(report["epochs"][0])
    assert report["data"]["train"]["rows"] == 80 and len(report["data"]["train"]["sha256"]) == 64
    assert report["config"]["max_length"] == 32 and report["versions"]["torch"]
    assert not checkpoint_dir_for(str(out)).exists()  # removed after success

    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "negative", 1: "positive"}

    json_path, plot_path = tmp_path / "eval.json", tmp_path / "cm.png"
    result = runner.invoke(main, ["eval", str(out), "--data", str(dev), "--json", str(json_path),
                                  "--plot", str(plot_path)])
    assert result.exit_code == 0, result.output
    evaluated = json.loads(json_path.read_text())
    assert evaluated["accuracy"] == report["final_eval"]["accuracy"]
    assert evaluated["confusion_matrix"] == report["final_eval"]["confusion_matrix"]
    assert evaluated["n"] == 40 and set(evaluated["per_class"]) == {"negative", "positive"}
    assert plot_path.read_bytes()[:4] == b"\x89PNG"


def test_tiny_teacher_learns(tiny_model_dir, tmp_path):
    train = write_csv(tmp_path / "train.csv", make_reviews(240, seed=3))
    dev = write_csv(tmp_path / "dev.csv", make_reviews(60, seed=4))
    report = teach(config(tiny_model_dir, train, dev, tmp_path / "out", epochs=6, lr=5e-3))
    assert report["final_eval"]["accuracy"] >= 0.9


def test_same_seed_same_teacher_even_with_a_new_head(reviews_csv, tmp_path):
    """A checkpoint without a classifier (here a masked-LM model: no pooler either, like the
    sentence-transformers teacher) gets new head weights; --seed fixes them, so two runs with the
    same seed give the same teacher bit for bit, and another seed another head."""
    train, dev = reviews_csv
    base = make_tiny_model(tmp_path / "mlm", mlm=True)

    class InitialHead(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.weight = model.classifier.weight.detach().clone()

    heads = {name: InitialHead() for name in "abc"}
    runs = {name: teach(config(base, train, dev, tmp_path / name, epochs=1, seed=seed), callbacks=[heads[name]])
            for name, seed in (("a", 0), ("b", 0), ("c", 1))}
    a, b, c = (weights(tmp_path / name) for name in "abc")
    assert "classifier.weight" in a and "bert.pooler.dense.weight" in a
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert runs["a"]["final_eval"] == runs["b"]["final_eval"]
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])
    # the seed draws the new head and seeds the Trainer (its data order and dropout)
    assert torch.equal(heads["a"].weight, heads["b"].weight) and not torch.equal(heads["a"].weight, heads["c"].weight)
    assert [(r["training_args"]["seed"], r["training_args"]["data_seed"]) for r in runs.values()] == [(0, 0), (0, 0), (1, 1)]


def test_freeze_encoder_leaves_encoder_bitwise_unchanged(tiny_model_dir, reviews_csv, tmp_path):
    train, dev = reviews_csv
    before = weights(tiny_model_dir)
    report = teach(config(tiny_model_dir, train, dev, tmp_path / "out", freeze_encoder=True))
    after = weights(tmp_path / "out")
    encoder = [k for k in before if k.startswith("bert.") and ".pooler." not in k]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert set(report["trainable_parameters"]) == {"bert.pooler.dense.weight", "bert.pooler.dense.bias",
                                                   "classifier.weight", "classifier.bias"}
    # and without freezing, the encoder moves
    teach(config(tiny_model_dir, train, dev, tmp_path / "full"))
    full = weights(tmp_path / "full")
    assert not all(torch.equal(before[k], full[k]) for k in encoder)


def imbalanced(tmp_path):
    rows = make_reviews(90, seed=5, classes=("negative",) * 8 + ("positive",))
    return write_csv(tmp_path / "imbalanced.csv", rows)


def test_class_weights_balanced_weight_the_loss(tiny_model_dir, tmp_path):
    from distill.training import WeightedTrainer

    train = imbalanced(tmp_path)
    report = teach(config(tiny_model_dir, train, None, tmp_path / "w", class_weights="balanced"))
    counts = np.array([80, 10])
    np.testing.assert_allclose(report["class_weights"], 90 / (2 * counts), rtol=1e-6)

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    trainer = WeightedTrainer.__new__(WeightedTrainer)
    trainer.class_weights = torch.tensor([0.5625, 4.5])

    class Fixed(torch.nn.Module):
        training = False

        def forward(self, **inputs):
            return type("Out", (), {"logits": logits})()

    loss = trainer.compute_loss(Fixed(), {"labels": labels})
    expected = torch.nn.CrossEntropyLoss(weight=trainer.class_weights)(logits, labels)
    assert torch.allclose(loss, expected)
    assert not torch.allclose(loss, torch.nn.functional.cross_entropy(logits, labels))

    plain = teach(config(tiny_model_dir, train, None, tmp_path / "plain"))
    assert plain["class_weights"] is None
    assert not torch.equal(weights(tmp_path / "w")["classifier.weight"],
                           weights(tmp_path / "plain")["classifier.weight"])


@pytest.mark.parametrize("mode,counts", [("over", [80, 80]), ("under", [10, 10])])
def test_resample_changes_the_training_rows(tiny_model_dir, tmp_path, monkeypatch, mode, counts):
    import distill.teacher

    draws = []
    real = distill.teacher.resample_indices
    monkeypatch.setattr(distill.teacher, "resample_indices", lambda labels, how, seed: draws.append((how, seed))
                        or real(labels, how, seed))
    train = imbalanced(tmp_path)
    report = teach(config(tiny_model_dir, train, None, tmp_path / mode, resample=mode, epochs=1, seed=3))
    assert report["data"]["train_class_counts"] == counts
    assert report["data"]["train_rows_used"] == sum(counts)
    assert draws == [(mode, 3)]                        # the rows are drawn with --seed


def test_max_train_samples_and_dropout(tiny_model_dir, reviews_csv, tmp_path):
    train, dev = reviews_csv
    report = teach(config(tiny_model_dir, train, dev, tmp_path / "out", max_train_samples=30,
                          dropout=0.3, epochs=1))
    assert report["data"]["train_rows_used"] == 30
    assert report["data"]["train"]["rows"] == 30 and report["data"]["train"]["file_rows"] == 80
    assert "train: 30 of 80 rows (30 used)" in summary(report, str(tmp_path / "out"))
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == 0.3 and saved["attention_probs_dropout_prob"] == 0.3


def test_every_training_setting_reaches_where_it_acts(tiny_model_dir, tmp_path, monkeypatch):
    """Each setting observed where it acts, not echoed from the config: the Trainer's own
    arguments, the final evaluation's batches, the tokenizer's cut, the vocabulary extension and
    the data options (a .data JSONL file with integer ids named by a names file)."""
    import distill.predict as predict
    import distill.training as training
    import distill.vocab_extend as vocab_extend

    calls = {"predict": [], "encode": [], "extend": []}
    real_predict, real_encode, real_extend = predict.predict_logits, training.encode_rows, vocab_extend.extend_vocabulary
    monkeypatch.setattr(predict, "predict_logits", lambda m, t, texts, length, batch, **k:
                        calls["predict"].append((length, batch)) or real_predict(m, t, texts, length, batch, **k))
    monkeypatch.setattr(training, "encode_rows", lambda t, texts, length, **k:
                        calls["encode"].append(length) or real_encode(t, texts, length, **k))
    monkeypatch.setattr(vocab_extend, "extend_vocabulary", lambda *a, **k:
                        calls["extend"].append(a[3:]) or real_extend(*a, **k))
    names = tmp_path / "names.txt"
    names.write_text("bad\ngood\n", encoding="utf-8")
    for name, seed in (("train", 1), ("dev", 2)):
        (tmp_path / f"{name}.data").write_text("".join(json.dumps({"body": text, "y": int(label == "positive")}) + "\n"
                                                       for text, label in make_reviews(40, seed=seed)), encoding="utf-8")
    data = DataOptions(format="jsonl", text_column="body", label_column="y", label_names=str(names))
    report = teach(config(tiny_model_dir, tmp_path / "train.data", tmp_path / "dev.data", tmp_path / "out", epochs=1,
                          weight_decay=0.2, warmup=3, eval_batch_size=7, early_stopping=2, metric="macro_f1",
                          logging_steps=4, max_length=12, extend_vocab=True, extend_vocab_words=2,
                          extend_vocab_init="mean", data=data))
    args = report["training_args"]
    assert (args["weight_decay"], args["warmup_steps"], args["per_device_eval_batch_size"], args["logging_steps"],
            args["metric_for_best_model"], args["load_best_model_at_end"]) == (0.2, 3, 7, 4, "macro_f1", True)
    assert calls["predict"] == [(12, 7)] and calls["encode"] == [12, 12]     # final eval; train and eval rows
    assert calls["extend"] == [(2, "mean", 0)] and report["vocab_extension"]["init"] == "mean"
    assert report["labels"] == ["bad", "good"] and report["data"]["train"]["rows"] == 40


def test_fractional_epochs_are_recorded_as_reached_and_not_called_an_early_stop():
    """--epochs 0.01 trained one step (0.125 of an epoch) and printed "epoch 0" and "stopped after
    epoch 0 of 0.01"; --epochs 1.4 (ending at 1.5 epochs, whole batches) printed an "epoch 2"."""
    from distill.cli import early_stop_line
    from distill.training import epoch_number

    assert [epoch_number(e) for e in (None, 1.0, 0.99999999, 2.00000004, 0.125, 1.5, 1.333)] == \
        [0, 1, 1, 2, 0.125, 1.5, 1.333]
    assert isinstance(epoch_number(2.00000004), int)
    report = {"config": {"early_stopping": 1, "epochs": 0.01, "metric": "accuracy"}, "best_step": 1,
              "epochs": [{"epoch": 0.125, "step": 1, "accuracy": 0.5}]}
    assert early_stop_line(report) == "early stopping: ran all 0.01 epochs; kept epoch 0.125's weights (accuracy 0.5000)"
    thirds = {**report, "config": {**report["config"], "epochs": 1.333},
              "epochs": [{"epoch": 1, "step": 1000, "accuracy": 0.5}, {"epoch": epoch_number(1.333), "step": 1333}]}
    assert early_stop_line(thirds).startswith("early stopping: ran all 1.333 epochs")
    stopped = {**report, "config": {**report["config"], "epochs": 3},
               "epochs": [{"epoch": 1, "step": 8, "accuracy": 0.5}, {"epoch": 2, "step": 16, "accuracy": 0.4}]}
    assert early_stop_line(stopped).startswith("early stopping: stopped after epoch 2 of 3")


def test_warmup_fraction_and_steps():
    from distill.training import training_arguments, warmup_steps_value

    assert warmup_steps_value(0.1) == 0.1 and isinstance(warmup_steps_value(10), int)
    with pytest.raises(ValueError):
        warmup_steps_value(-1)
    args = training_arguments(checkpoint_dir=Path("/tmp/x"), epochs=1, lr=1e-4, batch_size=8,
                              eval_batch_size=8, weight_decay=0.01, warmup=0.25, seed=0, has_eval=False,
                              early_stopping=None, metric="accuracy", logging_steps=5, progress=False)
    assert args.get_warmup_steps(100) == 25
    assert args.lr_scheduler_type.value == "linear" and args.weight_decay == 0.01
    assert args.train_sampling_strategy == "group_by_length"


def test_adamw_with_schedule_decays_weights_only_and_warms_up():
    """The optimizer of the loops outside Trainer (contrastive pairs, PET cloze)."""
    from transformers import BertConfig, BertModel

    from distill.training import adamw_with_schedule

    model = BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16))
    optimizer, schedule = adamw_with_schedule(model, 1e-3, 0.01, 0.25, total_steps=20)
    decayed, plain = optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert all(not names[id(p)].endswith("bias") and "LayerNorm" not in names[id(p)] for p in decayed["params"])
    assert {names[id(p)] for p in plain["params"]} == {n for n in names.values()
                                                       if n.endswith("bias") or "LayerNorm" in n}
    assert len(decayed["params"]) + len(plain["params"]) == len(names)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    # 5 warmup steps (a quarter of 20) up to the peak, then linear decay to 0
    assert lrs[:6] == pytest.approx([0, 2e-4, 4e-4, 6e-4, 8e-4, 1e-3])
    assert lrs[-1] == pytest.approx(1e-3 / 15) and optimizer.param_groups[0]["lr"] == 0
    _, fixed = adamw_with_schedule(model, 1e-3, 0.0, 3, total_steps=20)
    assert fixed.lr_lambdas[0](3) == 1.0 and fixed.lr_lambdas[0](2) == pytest.approx(2 / 3)


def test_early_stopping_keeps_best_and_stops(tiny_model_dir, reviews_csv, tmp_path):
    train, dev = reviews_csv
    report = teach(config(tiny_model_dir, train, dev, tmp_path / "out", epochs=6, lr=1e-9,
                          early_stopping=1, metric="accuracy"))
    # accuracy cannot improve at lr 1e-9: epoch 1 is best, epoch 2 exhausts the patience
    assert [e["epoch"] for e in report["epochs"]] == [1, 2]
    assert report["best_step"] == 5
    assert report["best_checkpoint"] is None  # the checkpoints are deleted: no path to a directory gone
    # the loss the Trainer logs at the first step and every logging_steps (5 = one epoch here);
    # the step-10 entry averages steps 6..10, the whole of epoch 2
    assert [(c["step"], c["epoch"]) for c in report["loss_curve"]] == [(1, 0.2), (5, 1.0), (10, 2.0)]
    assert report["loss_curve"][-1]["loss"] == pytest.approx(report["epochs"][1]["train_loss"], rel=1e-3)
    # kept checkpoints show that the model written is epoch 1's, not the last epoch's
    kept = teach(config(tiny_model_dir, train, dev, tmp_path / "kept", epochs=6, lr=1e-9,
                        early_stopping=1, metric="accuracy", keep_checkpoints=True))
    best = Path(kept["best_checkpoint"])
    assert best.name == "checkpoint-5"
    weights = {name: load_file(str(path / "model.safetensors"))
               for name, path in (("best", best), ("last", best.parent / "checkpoint-10"), ("out", tmp_path / "kept"))}
    assert any(not torch.equal(weights["best"][k], weights["last"][k]) for k in weights["best"])
    assert all(torch.equal(weights["out"][k], weights["best"][k]) for k in weights["best"])
    with pytest.raises(TeachError, match="--early-stopping needs --eval"):
        teach(config(tiny_model_dir, train, None, tmp_path / "x", early_stopping=1))
    best_accuracy = report["epochs"][0]["accuracy"]
    assert (f"early stopping: stopped after epoch 2 of 6, 1 epoch(s) without a better accuracy; kept "
            f"epoch 1's weights (accuracy {best_accuracy:.4f})") in summary(report, "out")
    ran_all = {**report, "config": {**report["config"], "epochs": 2}}
    assert "early stopping: ran all 2 epochs; kept epoch 1's" in summary(ran_all, "out")
    by_loss = {**report, "config": {**report["config"], "metric": "loss"}}     # the history says eval_loss
    assert (f"kept epoch 1's weights (loss {report['epochs'][0]['eval_loss']:.4f})") in summary(by_loss, "out")
    assert "early stopping" not in summary({**report, "config": {**report["config"], "early_stopping": None}},
                                           "out")


def test_early_stopping_on_auc_needs_two_classes_in_the_eval_rows(tiny_model_dir, reviews_csv, tmp_path):
    train, _ = reviews_csv
    one_class = write_csv(tmp_path / "one.csv", make_reviews(6, seed=3, classes=("positive",)))
    with pytest.raises(TeachError, match=r"--metric auc: ROC-AUC needs at least 2 classes in the eval "
                                         r"rows; every row of .*one\.csv is 'positive'"):
        teach(config(tiny_model_dir, train, one_class, tmp_path / "x", early_stopping=1, metric="auc"))
    assert not (tmp_path / "x").exists() and not checkpoint_dir_for(str(tmp_path / "x")).exists()
    report = teach(config(tiny_model_dir, train, one_class, tmp_path / "acc", early_stopping=1,
                          metric="accuracy", epochs=1))             # accuracy is defined on one class
    assert report["best_step"] is not None


def test_a_class_without_training_rows_is_named(tiny_model_dir, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("negative\npositive\nneutral, mostly\n", encoding="utf-8")
    train = imbalanced(tmp_path)
    base = config(tiny_model_dir, train, None, tmp_path / "w", epochs=1,
                  data=DataOptions(label_names=str(names)))
    with pytest.raises(TeachError, match=r"--class-weights balanced needs training rows of every class; "
                                         r".*imbalanced\.csv has none labelled 'neutral, mostly'$"):
        teach(replace(base, class_weights="balanced"))
    with pytest.raises(TeachError, match=r"imbalanced\.csv \(the 3 rows that --max-train-samples drew\) has "
                                         r"none labelled positive$"):
        teach(replace(base, class_weights="balanced", data=DataOptions(), max_train_samples=3, seed=1))
    report = teach(base)
    text = summary(report, str(tmp_path / "w"))
    assert "labels: 'negative', 'positive', 'neutral, mostly'" in text   # a comma inside one label
    assert "warning: no training rows labelled 'neutral, mostly': the model will not learn that class" in text
    assert "warning" not in summary({**report, "data": {**report["data"], "train_class_counts": [80, 10, 1]}}, "w")


class Interrupt(TrainerCallback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            raise KeyboardInterrupt("simulated kill")


def test_interrupted_run_leaves_no_model_and_resumes(tiny_model_dir, reviews_csv, tmp_path):
    train, dev = reviews_csv
    out = tmp_path / "out"
    cfg = config(tiny_model_dir, train, dev, out, epochs=3)   # 80 rows / 16 = 5 steps per epoch
    with pytest.raises(KeyboardInterrupt):
        teach(cfg, callbacks=[Interrupt(at_step=7)])
    assert not out.exists()
    assert not list(tmp_path.glob(".out.tmp-*"))
    assert (checkpoint_dir_for(str(out)) / "checkpoint-5").is_dir()

    with pytest.raises(TeachError, match=r"other settings \(lr 0\.003 -> 0\.01\)"):
        teach(replace(cfg, resume=True, lr=0.01))
    # early stopping cannot be added on resume (the Trainer failed at the next save, leaving a
    # half-written checkpoint), and --epochs must go past the checkpoint's
    with pytest.raises(TeachError, match=r"other settings \(early_stopping None -> 1\)"):
        teach(replace(cfg, resume=True, early_stopping=1))
    with pytest.raises(TeachError, match=r"checkpoint-5 has trained 1 epochs, more than --epochs 0\.5"):
        teach(replace(cfg, resume=True, epochs=0.5))
    # a newer checkpoint whose save was cut short (no trainer_state.json) is passed over
    partial = checkpoint_dir_for(str(out)) / "checkpoint-9"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    report = teach(replace(cfg, resume=True, epochs=3, keep_checkpoints=False))  # these may change
    assert report["resumed_from"].endswith("checkpoint-5")
    assert (out / "model.safetensors").is_file()

    # the resumed run ends where an uninterrupted run ends, bit for bit (same process, same
    # threads: the checkpoint restores the optimizer, schedule and RNG states), and reports every
    # epoch, as it does
    straight_report = teach(replace(cfg, out=str(tmp_path / "straight")))
    resumed, straight = weights(out), weights(tmp_path / "straight")
    assert resumed.keys() == straight.keys() and all(torch.equal(resumed[k], straight[k]) for k in straight)
    assert [e["epoch"] for e in report["epochs"]] == [e["epoch"] for e in straight_report["epochs"]] == [1, 2, 3]
    for name in ("train_loss", "accuracy", "eval_loss"):
        assert [e[name] for e in report["epochs"]] == pytest.approx([e[name] for e in straight_report["epochs"]],
                                                                     rel=1e-4)
    assert [c["step"] for c in report["loss_curve"]] == [c["step"] for c in straight_report["loss_curve"]]


def test_resume_compares_the_data_and_model_by_content_not_by_path(tiny_model_dir, reviews_csv, tmp_path,
                                                                   monkeypatch):
    """A training file edited in place (rows dropped; a renamed label would shift every label id), or a model
    directory with other weights, is refused on --resume; the same file spelled another way
    (relative instead of absolute) resumes."""
    import shutil

    train, dev = reviews_csv
    data = Path(train)
    assert data.parent == tmp_path
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    cfg = config(model, data, dev, tmp_path / "out", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        teach(cfg, callbacks=[Interrupt(at_step=7)])
    settings = json.loads((checkpoint_dir_for(cfg.out) / "run_settings.json").read_text())
    assert settings["input_contents"]["train"] == hashlib.sha256(data.read_bytes()).hexdigest()

    original = data.read_bytes()
    data.write_bytes(b"".join(original.splitlines(keepends=True)[:-8]))    # 8 rows fewer
    with pytest.raises(TeachError, match=r"other settings \(train: other contents than in the interrupted run\)"):
        teach(replace(cfg, resume=True))
    data.write_bytes(original)
    tokenizer_config = model / "tokenizer_config.json"
    tokenizer_config.write_text(tokenizer_config.read_text().replace("{", '{"model_max_length": 30, ', 1))
    with pytest.raises(TeachError, match=r"model: other contents"):
        teach(replace(cfg, resume=True))
    shutil.rmtree(model)
    shutil.copytree(tiny_model_dir, model)
    monkeypatch.chdir(tmp_path)
    report = teach(replace(cfg, resume=True, train=data.name, model="model"))
    assert report["resumed_from"].endswith("checkpoint-5") and [e["epoch"] for e in report["epochs"]] == [1, 2]


def test_existing_output_needs_force_and_resume_needs_a_checkpoint(tiny_model_dir, reviews_csv, tmp_path):
    train, dev = reviews_csv
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["teach", "--train", str(train), "--model", str(tiny_model_dir),
                                       "--out", str(out), "--quiet"])
    assert result.exit_code != 0 and "already exists" in result.output
    assert (out / "keep.txt").read_text() == "mine"
    assert not checkpoint_dir_for(str(out)).exists()                     # refused before training
    result = CliRunner().invoke(main, ["teach", "--train", str(train), "--model", str(tiny_model_dir),
                                       "--out", str(out), "--epochs", "1", "--quiet", "--force"])
    assert result.exit_code == 0, result.output                          # --force replaces it
    assert not (out / "keep.txt").exists() and (out / "training.json").is_file()
    with pytest.raises(TeachError, match="no checkpoint"):
        teach(config(tiny_model_dir, train, dev, tmp_path / "new", resume=True))


def test_bad_input_names_file_and_line_and_writes_nothing(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\ngood film,positive\n   ,negative\n", encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["teach", "--train", str(bad), "--model", str(tiny_model_dir),
                                       "--out", str(out), "--quiet"])
    assert result.exit_code != 0
    assert "bad.csv" in result.output and "line 3" in result.output
    assert not out.exists() and not checkpoint_dir_for(str(out)).exists()


@pytest.mark.parametrize("options, message", [
    (["--max-train-samples", "0"], "--max-train-samples must be at least 1, got 0"),
    (["--eval-batch-size", "0"], "--eval-batch-size must be at least 1, got 0"),
    (["--logging-steps", "0"], "--logging-steps must be at least 1, got 0"),
    (["--early-stopping", "0"], "--early-stopping must be at least 1, got 0"),
    (["--warmup", "-1"], "--warmup must be at least 0, got -1.0"),
    (["--warmup", "2.5"], "--warmup 2.5: below 1 it is a fraction of the steps, from 1 a whole number of steps"),
    (["--extend-vocab", "--extend-vocab-words", "-5"], "--extend-vocab-words must be at least 0, got -5"),
    (["--weight-decay", "-0.1"], "--weight-decay must be at least 0, got -0.1"),
    (["--max-length", "1"], "--max-length must be at least 2, got 1"),
    (["--lr", "0"], "--lr must be > 0, got 0.0"),
    (["--batch-size", "0"], "--batch-size must be > 0, got 0"),
    (["--class-weights", "balanced", "--resample", "over"], "correct the imbalance twice"),
    (["--extend-vocab-words", "5"], "--extend-vocab-words only acts with --extend-vocab"),
    (["--metric", "loss"], "--metric only acts with --early-stopping"),
    (["--shots", "4", "--template", "x {label}"], "--shots, --template only act with --few-shot"),
    (["--max-length", "129"], "--max-length 129 is longer than"),  # the tiny model has 128 positions
    (["--model", "/nonexistent/model"], "--model /nonexistent/model: no such directory"),
    (["--seed", "-1"], "--seed -1: must be in 0..4294967295"),
    (["--seed", "4294967296"], "--seed 4294967296: must be in 0..4294967295"),
    (["--few-shot", "prompt", "--seed", "-1"], "--seed -1: must be in 0..4294967295"),
    (["--model", str(ROOT / "examples")], "not a model directory (no config.json)"),
])
def test_cli_refuses_settings_that_cannot_work_before_writing_anything(tiny_model_dir, reviews_csv,
                                                                      tmp_path, options, message):
    train, dev = reviews_csv
    out = tmp_path / "new" / "sub" / "teacher"
    result = CliRunner().invoke(main, ["teach", "--train", str(train), "--eval", str(dev), "--model",
                                       str(tiny_model_dir), "--out", str(out), "--quiet", *options])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Error: " in result.output and message in result.output, result.output
    assert not (tmp_path / "new").exists()  # not even the parent directories


def test_max_length_past_the_positions_is_refused_before_the_data_is_read(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text('text,label\n"never closed,positive\n', encoding="utf-8")
    with pytest.raises(TeachError, match="--max-length 200 is longer than"):
        teach(config(tiny_model_dir, bad, None, tmp_path / "out", max_length=200))


def test_teacher_directory_has_vocab_txt_and_the_umask_mode(tiny_model_dir, reviews_csv, tmp_path):
    import os

    from transformers import AutoTokenizer

    train, _ = reviews_csv
    out = tmp_path / "made" / "teacher"
    teach(config(tiny_model_dir, train, None, out, epochs=1))
    tokenizer = AutoTokenizer.from_pretrained(out)
    lines = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert lines == [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]
    mask = os.umask(0)
    os.umask(mask)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~mask


def test_cli_summary_says_which_rows_were_skipped(tiny_model_dir, reviews_csv, tmp_path):
    train, _ = reviews_csv
    messy = tmp_path / "messy.csv"
    messy.write_text(train.read_text(encoding="utf-8") + "   ,positive\nno label here\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["teach", "--train", str(messy), "--model", str(tiny_model_dir),
                                       "--out", str(tmp_path / "out"), "--epochs", "1", "--quiet",
                                       "--skip-bad-rows"])
    assert result.exit_code == 0, result.output
    assert f"train ({messy}): skipped 2 rows: 1 empty text, 1 missing column" in result.output
    assert "Loading weights" not in result.output  # --quiet silences transformers' own bars too


def teach_one_quiet_epoch(model, data, out):
    result = CliRunner().invoke(main, ["teach", "--train", str(data), "--model", str(model), "--out", str(out),
                                       "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    return result


def test_a_label_column_with_about_one_row_a_label_is_warned_about(tiny_model_dir, tmp_path):
    """The text column given as the label column trained a head of one class per row, and the
    summary printed every one of them."""
    rows = [(f"label text {i}", f"film number {i}") for i in range(60)]
    result = teach_one_quiet_epoch(tiny_model_dir, write_csv(tmp_path / "swapped.csv", rows), tmp_path / "out")
    assert ("warning: 60 labels for 60 training rows, fewer than 2 rows a label: is column 'label' the "
            "label? (--text-column, --label-column)") in result.output
    labels_line = next(line for line in result.output.splitlines() if line.startswith("labels: "))
    assert labels_line.endswith(", ... (60 labels)") and labels_line.count(",") == 20


def test_labels_that_differ_only_in_unicode_normal_form_are_warned_about(tiny_model_dir, tmp_path):
    rows = [(f"film {i}", "caf\u00e9" if i % 3 == 0 else "cafe\u0301" if i % 3 == 1 else "bad") for i in range(30)]
    result = teach_one_quiet_epoch(tiny_model_dir, write_csv(tmp_path / "mixed.csv", rows), tmp_path / "out")
    assert ("warning: labels 'cafe\\u0301' and 'caf\\xe9' are the same text in two Unicode normal forms, so "
            "they print alike but are different classes: write them one way") in result.output


def test_quiet_run_prints_the_summary_alone(tiny_model_dir, tmp_path):
    """With --quiet a teach run prints its summary and nothing of transformers' own: no load
    report for the new 3-label head (the summary names the new weights), no raw Trainer log
    dicts, no progress bars. Run as a user runs it, in its own process."""
    train = write_csv(tmp_path / "three.csv", make_reviews(30, classes=("negative", "positive", "neutral")))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "distill.cli", "teach", "--train", str(train), "--model",
                           str(tiny_model_dir), "--out", str(out), "--epochs", "2", "--quiet"],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""
    lines = done.stdout.strip().splitlines()
    assert lines[0] == f"== teach -> {out}" and lines[-1] == f"report: {out / 'training.json'}"
    assert "new weights (not in the checkpoint, drawn with --seed): classifier.bias, classifier.weight" in lines
    assert not [line for line in lines if line.startswith("{")]
    assert json.loads((out / "training.json").read_text())["new_weights"] == ["classifier.bias", "classifier.weight"]


def test_a_vocabulary_with_a_repeated_line_trains_and_saves(tmp_path):
    """A vocab.txt with a repeated line (Hugging Face keeps the last id, so the first one's id is
    held by no token; the shared bert-base-chinese file has such lines) used to crash at save,
    after training. The saved vocab.txt keeps every id's line and tokenizes as the base does."""
    from transformers import AutoTokenizer, BertTokenizer

    base = make_tiny_model(tmp_path / "base")
    lines = (base / "vocab.txt").read_text(encoding="utf-8").splitlines()
    good = lines.index("good")
    lines.insert(good, "good")                           # id `good` is now a gap, "good" is good + 1
    (base / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (base / name).unlink(missing_ok=True)
    BertTokenizer(str(base / "vocab.txt"), do_lower_case=True).save_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base)
    model.resize_token_embeddings(len(lines))
    model.save_pretrained(base)
    train = write_csv(tmp_path / "train.csv", make_reviews(20))
    teach(config(base, train, None, tmp_path / "out", epochs=1))
    saved = (tmp_path / "out" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(saved) == len(lines) and saved[good + 1] == "good" and saved[good] == f"[unused-id-{good}]"
    texts = ["good film", "a dull and lifeless plot, good acting"]
    before, after = AutoTokenizer.from_pretrained(base), AutoTokenizer.from_pretrained(tmp_path / "out")
    assert before(texts)["input_ids"] == after(texts)["input_ids"]
    assert before("good")["input_ids"][1] == good + 1


def test_eval_rejects_unknown_label(tiny_model_dir, reviews_csv, tmp_path):
    train, _ = reviews_csv
    teach(config(tiny_model_dir, train, None, tmp_path / "out", epochs=1))
    dev = write_csv(tmp_path / "dev3.csv", make_reviews(9, classes=("negative", "positive", "neutral")))
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "out"), "--data", str(dev)])
    assert result.exit_code != 0 and "dev3.csv" in result.output
    assert "unknown label 'neutral' in column 'label' (known labels: negative, positive)" in result.output


def test_help_is_complete():
    result = CliRunner().invoke(main, ["teach", "--help"])
    assert result.exit_code == 0
    for option in ("--freeze-encoder", "--class-weights", "--resample", "--early-stopping", "--warmup",
                   "--dropout", "--resume", "--text-column", "--label-names", "--skip-bad-rows"):
        assert option in result.output


def test_python_m_distill_runs_the_same_commands():
    done = subprocess.run([sys.executable, "-m", "distill", "--help"], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: python -m distill [OPTIONS] COMMAND [ARGS]...")
    for command in ("teach", "student", "eval", "export", "pipeline"):
        assert f"  {command} " in done.stdout


def test_torchrun_two_processes(tiny_model_dir, reviews_csv, tmp_path):
    train, dev = reviews_csv
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",   # a free port
           "-m", "distill.cli", "teach", "--train", str(train), "--eval", str(dev), "--model",
           str(tiny_model_dir), "--out", str(out), "--epochs", "1", "--batch-size", "8", "--quiet"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "training.json").read_text())
    assert report["world_size"] == 2
    assert report["final_eval"]["n"] == 40
    result = CliRunner().invoke(main, ["eval", str(out), "--data", str(dev)])
    assert result.exit_code == 0 and "accuracy" in result.output


@pytest.mark.slow
def test_real_teacher_on_sst2_slice(shared_data, tmp_path):
    """The packaged all-MiniLM-L6-v2 fine-tuned briefly on 2,000 SST-2 rows: well above chance."""
    cfg = TeachConfig(train=str(shared_data / "sst2" / "train.tsv"), eval=str(shared_data / "sst2" / "dev.tsv"),
                      out=str(tmp_path / "sst2"), epochs=1, max_length=64, max_train_samples=2000,
                      progress=False, data=DataOptions(text_column="sentence"))
    report = teach(cfg)
    assert report["labels"] == ["0", "1"]
    assert report["final_eval"]["accuracy"] > 0.72


def test_predict_logits_in_input_order_batches_match_sorted(tiny_model_dir):
    """sort=False (a plain Hugging Face loop: consecutive batches) pads differently but gives the
    same logits, in input order, as the length-sorted batches."""
    from distill.predict import load_model_dir, predict_logits

    model, tokenizer, _ = load_model_dir(tiny_model_dir)
    reviews = [row[0] for row in make_reviews(24, seed=5)]
    texts = [" ".join([r] * (1 + 2 * (i % 2))) for i, r in enumerate(reviews)] + [""]   # short, long, ...
    calls = []
    handle = model.register_forward_hook(lambda m, args, kwargs, out: calls.append(kwargs["input_ids"].shape),
                                         with_kwargs=True)
    plain = predict_logits(model, tokenizer, texts, 32, batch_size=4, sort=False)
    n_plain = list(calls)
    calls.clear()
    ordered = predict_logits(model, tokenizer, texts, 32, batch_size=4, sort=True)
    handle.remove()
    np.testing.assert_allclose(plain, ordered, atol=1e-5)
    one_by_one = np.concatenate([predict_logits(model, tokenizer, [t], 32, batch_size=1) for t in texts])
    np.testing.assert_allclose(plain, one_by_one, atol=1e-5)
    assert [shape[0] for shape in n_plain] == [4] * 6 + [1]
    # every consecutive batch holds a long text and pads its short ones; sorted batches pad less
    assert sum(a * b for a, b in n_plain) > sum(a * b for a, b in calls)
