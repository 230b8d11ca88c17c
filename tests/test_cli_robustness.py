"""What scripts and CI rely on: exit codes for interruptions, a diverged run refused, strict JSON,
damaged weights named, outputs that would destroy an input refused."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from distill.cli import main
from export.cli import export_group
from tiny import make_reviews, write_csv

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# ---------------------------------------------------------------- interruptions

@pytest.mark.parametrize("raised, code, said", [(KeyboardInterrupt, 130, "Interrupted."),
                                                 ("terminated", 143, "Terminated.")])
def test_an_interrupted_command_exits_130_and_a_terminated_one_143(tiny_model_dir, reviews_csv, tmp_path,
                                                                 monkeypatch, raised, code, said):
    """click alone exits 1 on Ctrl-C, the code of a bad-input error."""
    from distill.cli_group import Terminated

    error = Terminated if raised == "terminated" else raised

    def stop(*args, **kwargs):
        raise error()

    monkeypatch.setattr("distill.teacher.read_data", stop)
    train, _ = reviews_csv
    result = invoke("teach", "--model", tiny_model_dir, "--train", train, "--out", tmp_path / "t", "--quiet")
    assert result.exit_code == code and said in result.output
    monkeypatch.setattr("export.cli.export_bundle", stop)
    result = CliRunner().invoke(export_group, ["onnx", str(tiny_model_dir), "--out", str(tmp_path / "b")])
    assert result.exit_code == code and said in result.output


def test_sigterm_during_training_exits_143_and_leaves_no_output(tiny_model_dir, reviews_csv, tmp_path):
    """Python's default SIGTERM skipped every cleanup; now it unwinds like Ctrl-C."""
    train, dev = reviews_csv
    out = tmp_path / "t"
    process = subprocess.Popen(
        [sys.executable, "-m", "distill", "teach", "--model", str(tiny_model_dir), "--train", str(train),
         "--eval", str(dev), "--out", str(out), "--epochs", "500", "--max-length", "32", "--quiet"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "t.checkpoints").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)                                      # training is under way
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stdout[-2000:] + stderr[-2000:]
    assert stderr.strip().endswith("Terminated.") and "Traceback" not in stderr
    assert not out.exists() and not list(tmp_path.glob(".t.tmp-*"))


# ---------------------------------------------------------------- diverged runs, strict JSON

def test_a_diverged_teacher_is_refused_and_nothing_is_written(tiny_model_dir, reviews_csv, tmp_path):
    train, dev = reviews_csv
    result = invoke("teach", "--model", tiny_model_dir, "--train", train, "--eval", dev, "--out", tmp_path / "t",
                    "--epochs", "2", "--lr", "1e8", "--max-length", "32", "--quiet")
    assert result.exit_code == 1, result.output
    assert "Error: training diverged: 45,506 of 45,506 weights are NaN or infinite after training; nothing " \
           "was written. Lower --lr (1e+08)" in result.output
    assert not (tmp_path / "t").exists()


def test_a_student_whose_loss_became_nan_is_refused(tiny_model_dir, reviews_csv, tmp_path):
    """--temperature 1e-40 divides the logits by it: the loss was NaN in every epoch while the
    weights stayed finite, and the run exited 0 with train_loss null in training.json."""
    import torch
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        teacher.classifier.weight.mul_(1000.0)        # logits of a trained teacher, not ~0.01
    teacher.save_pretrained(tiny_model_dir)
    train, dev = reviews_csv
    result = invoke("student", "--teacher", tiny_model_dir, "--train", train, "--eval", dev, "--out",
                    tmp_path / "s", "--layers", "1", "--epochs", "1", "--temperature", "1e-40", "--quiet")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: training diverged: ")
    assert result.output.rstrip().endswith("nothing was written. Lower --lr (0.0001) or raise --temperature (1e-40)")
    assert not (tmp_path / "s").exists()


def test_a_nan_training_loss_is_refused_even_with_finite_weights():
    from distill.training import EpochHistory, check_finite_loss

    history = EpochHistory()
    history.epochs = [{"epoch": 1, "step": 5, "train_loss": 0.5}]
    check_finite_loss(history, ValueError, "x")
    history.epochs.append({"epoch": 2, "step": 10, "train_loss": 0.4, "train_loss_kd": float("nan")})
    with pytest.raises(ValueError, match="training loss is NaN or infinite at epoch 2; nothing was written. "
                                         "Lower --temperature"):
        check_finite_loss(history, ValueError, "Lower --temperature")


def test_export_refuses_nan_weights(tiny_model_dir, tmp_path):
    import torch
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.classifier.weight[0, :3] = float("nan")
    model.save_pretrained(tiny_model_dir)
    result = CliRunner().invoke(export_group, ["onnx", str(tiny_model_dir), "--out", str(tmp_path / "b"), "--int8"])
    assert result.exit_code == 1, result.output
    assert f"{tiny_model_dir}: 3 weights are NaN or infinite (a training run that diverged?); nothing to export" \
        in result.output
    assert not (tmp_path / "b").exists()


def test_json_outputs_are_strict(tmp_path):
    """NaN and Infinity are not JSON: a strict parser refused training.json of a diverged run."""
    import numpy as np

    from distill.savedir import write_json

    write_json(tmp_path / "r.json", {"loss": float("nan"), "best": np.float32("inf"), "curve": np.array([1.0, np.nan]),
                                     "path": tmp_path, "n": np.int64(3), "ok": True, "none": None})

    def refuse(token):
        raise ValueError(token)

    loaded = json.loads((tmp_path / "r.json").read_text(), parse_constant=refuse)
    assert loaded == {"loss": None, "best": None, "curve": [1.0, None], "path": str(tmp_path), "n": 3, "ok": True,
                      "none": None}


# ---------------------------------------------------------------- damaged model directories

def assert_every_model_command_says(said: str, model_dir, reviews_csv, tmp_path):
    """eval, export, student (as --teacher) and teach (as --model) on model_dir: exit 1, `said`
    in the message, no traceback, nothing written."""
    train, dev = reviews_csv
    for args in (["eval", model_dir, "--data", dev],
                 ["export", "onnx", model_dir, "--out", tmp_path / "b"],
                 ["student", "--teacher", model_dir, "--train", train, "--out", tmp_path / "s", "--quiet"],
                 ["teach", "--model", model_dir, "--train", train, "--out", tmp_path / "t", "--quiet"]):
        result = invoke(*args)
        assert result.exit_code == 1 and said in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert not [p for p in tmp_path.iterdir() if p.name not in ("dev.csv", "train.csv", model_dir.name)]


def test_a_damaged_weights_file_is_named_by_every_command(tiny_model_dir, reviews_csv, tmp_path):
    weights = tiny_model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert_every_model_command_says(f"{tiny_model_dir}: cannot load its weights (Error while deserializing header:",
                                    tiny_model_dir, reviews_csv, tmp_path)


def test_a_model_directory_without_its_vocabulary_is_named_by_every_command(tiny_model_dir, reviews_csv, tmp_path):
    """transformers 5 builds a tokenizer of the 5 special tokens when vocab.txt and tokenizer.json
    are missing: every word became [UNK], and teach and export went on without a word."""
    from distill.tokenization import VOCABULARY_FILES

    for name in VOCABULARY_FILES:
        (tiny_model_dir / name).unlink(missing_ok=True)
    assert_every_model_command_says(f"{tiny_model_dir}: no vocabulary (vocab.txt or tokenizer.json); without "
                                    "one every word would be [UNK]", tiny_model_dir, reviews_csv, tmp_path)
    result = invoke("teach", "--model", f"{tiny_model_dir}/", "--train", reviews_csv[0], "--out", tmp_path / "t")
    assert result.output == f"Error: {tiny_model_dir}: no vocabulary (vocab.txt or tokenizer.json); without one " \
                            "every word would be [UNK]\n", result.output          # the path once, slash or not


# ---------------------------------------------------------------- outputs that would destroy an input

def test_an_output_that_is_or_holds_an_input_is_refused(tiny_model_dir, reviews_csv, tmp_path):
    train, dev = reviews_csv
    teacher = tiny_model_dir
    before = (teacher / "model.safetensors").read_bytes()
    cases = [
        (["student", "--teacher", teacher, "--train", train, "--out", teacher, "--force", "--quiet"],
         f"--out {teacher} is --teacher {teacher}"),
        (["student", "--teacher", teacher, "--train", train, "--out", teacher.parent, "--force", "--quiet"],
         f"--out {teacher.parent} holds --teacher {teacher}"),
        (["teach", "--model", teacher, "--train", train, "--out", teacher, "--force", "--quiet"],
         f"--out {teacher} is --model {teacher}"),
        (["teach", "--model", teacher, "--train", train, "--out", teacher, "--force", "--few-shot", "prompt"],
         f"--out {teacher} is --model {teacher}"),
        (["export", "onnx", teacher, "--out", teacher, "--force"], f"--out {teacher} is MODEL_DIR {teacher}"),
        (["eval", teacher, "--data", dev, "--json", teacher / "model.safetensors"],
         f"--json {teacher / 'model.safetensors'} is the same file as the model's file"),
    ]
    for args, said in cases:
        result = invoke(*args)
        assert result.exit_code == 1 and said in result.output, (args, result.output)
    assert (teacher / "model.safetensors").read_bytes() == before
    result = invoke("eval", teacher, "--data", dev, "--json", teacher / "eval.json")   # beside the model: fine
    assert result.exit_code == 0, result.output


def test_pipeline_refuses_an_out_it_cannot_write_before_any_stage(tmp_path):
    train = write_csv(tmp_path / "train.csv", make_reviews(8, seed=1))
    dev = write_csv(tmp_path / "dev.csv", make_reviews(4, seed=2))
    toml = tmp_path / "p.toml"
    toml.write_text(f'train = "{train}"\neval = "{dev}"\nout = "{train}/out"\n', encoding="utf-8")
    result = invoke("pipeline", "--config", toml)
    assert result.exit_code == 1, result.output
    assert f"Error: out: cannot write {train}/out: {train} is a file" in result.output


# ---------------------------------------------------------------- --quiet for scripts

def test_eval_and_export_quiet_print_the_summary_alone(tiny_model_dir, reviews_csv, tmp_path):
    """Without --quiet, eval shows progress bars and export a line per step on stderr."""
    _, dev = reviews_csv

    def run(group, args):
        done = subprocess.run([sys.executable, "-m", group, *map(str, args)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    loud = run("distill", ["eval", tiny_model_dir, "--data", dev])
    quiet = run("distill", ["eval", tiny_model_dir, "--data", dev, "--quiet"])
    assert "predict" in loud.stderr and quiet.stderr == ""
    assert quiet.stdout == loud.stdout and "confusion matrix" in quiet.stdout
    loud = run("export", ["onnx", tiny_model_dir, "--out", tmp_path / "a", "--samples", 4])
    quiet = run("export", ["onnx", tiny_model_dir, "--out", tmp_path / "b", "--samples", 4, "--quiet"])
    assert "torch reference on 4 generated texts" in loud.stderr and quiet.stderr == ""
    assert quiet.stdout.replace(str(tmp_path / "b"), "B") == loud.stdout.replace(str(tmp_path / "a"), "B")
    for engine in ("onnxruntime", "numpy"):      # a bundle's engines showed nothing until the report
        loud = run("distill", ["eval", tmp_path / "a", "--data", dev, "--engine", engine])
        quiet = run("distill", ["eval", tmp_path / "a", "--data", dev, "--engine", engine, "--quiet"])
        done = {"onnxruntime": "2/2", "numpy": "40/40"}[engine]          # batches of 32 / texts
        assert re.search(rf"predict: 100%\|.*\| {done} ", loud.stderr.replace("\r", "\n")), (engine, loud.stderr)
        assert quiet.stderr == "" and quiet.stdout == loud.stdout


def test_an_eval_plot_that_cannot_be_drawn_is_one_error_line(tiny_model_dir, reviews_csv, tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise MemoryError("std::bad_alloc")

    monkeypatch.setattr("distill.metrics.plot_confusion_matrix", out_of_memory)
    _, dev = reviews_csv
    plot = tmp_path / "cm.png"
    result = invoke("eval", tiny_model_dir, "--data", dev, "--plot", plot, "--quiet")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.rstrip().endswith(
        f"Error: --plot {plot}: the confusion matrix could not be drawn: MemoryError: std::bad_alloc")


def test_a_label_the_output_encoding_lacks_is_printed_as_an_escape(tmp_path):
    """On Windows a redirected stdout uses the ANSI code page (cp1252): a Chinese label in eval's
    report raised UnicodeEncodeError after the evaluation, and --json was never written."""
    from tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "m", labels=("中性", "positive"))
    data = write_csv(tmp_path / "d.csv", [("a gripping film", "中性"), ("dull and lifeless", "positive")])
    done = subprocess.run([sys.executable, "-m", "distill", "eval", str(model), "--data", str(data), "--quiet",
                           "--json", str(tmp_path / "r.json")], capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "cp1252"})
    assert done.returncode == 0, done.stderr.decode("cp1252", "replace")[-2000:]
    assert b"\\u4e2d\\u6027" in done.stdout and json.loads((tmp_path / "r.json").read_text())["n"] == 2
