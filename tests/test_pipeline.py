"""`distill pipeline` end to end on a tiny local model, stage skipping and resuming, settings
precedence, and `distill teach --extend-vocab`."""
import functools
import json
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from transformers import TrainerCallback

from distill.cli import main
from distill.pipeline import PipelineError, run_pipeline
from distill.pipeline_config import PipelineConfigError, build_settings, parse_assignment
from distill.pipeline_report import ROWS
from distill.savedir import dir_size_bytes
from tiny import make_reviews, make_tiny_model, write_csv

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["teacher", "student", "export_fp32", "export_int8", "baseline", "report"]
PNG = b"\x89PNG\r\n\x1a\n"

CONFIG = """
train = "train.csv"
eval = "dev.csv"
out = "run"

[teach]
model = "base"
epochs = 4
lr = 5e-3
batch_size = 16
max_length = 32

[student]
layers = 1
epochs = 2
lr = 5e-3
batch_size = 16
augment_factor = 1

[export]
max_accuracy_drop = 100.0   # 30 eval rows: one flipped label is 3.3 points
"""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from two threads on a shared 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A directory with a tiny 2-layer base model, 80 training and 30 eval rows, pipeline.toml."""
    root = tmp_path_factory.mktemp("pipeline")
    make_tiny_model(root / "base", layers=2)
    write_csv(root / "train.csv", make_reviews(80, seed=1))
    write_csv(root / "dev.csv", make_reviews(30, seed=2))
    (root / "pipeline.toml").write_text(CONFIG, encoding="utf-8")
    return root


def run(project, out, sets=(), callbacks=None, lines=None):
    """Run the pipeline from project/pipeline.toml into `out`; (report, log lines)."""
    lines = [] if lines is None else lines
    settings = build_settings(str(project / "pipeline.toml"), {"": {"out": str(out)}}, sets, progress=False)
    report = run_pipeline(settings, log=lines.append, callbacks=callbacks)
    return report, lines


def statuses(lines) -> dict:
    """{stage: 'ran' | 'skipped'} from the progress lines."""
    found = {}
    for line in lines:
        for stage in STAGES:
            if line.startswith("[") and f"] {stage}: " in line:
                if "skipped" in line:
                    found[stage] = "skipped"
                elif ": done in" in line:
                    found[stage] = "ran"
    return found


class InterruptAtFirstSave(TrainerCallback):
    """Stops training like Ctrl-C right after the first epoch's checkpoint is written."""

    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt


@pytest.fixture(scope="module")
def finished(project):
    """The pipeline interrupted during the student's training (after its first epoch), then run
    again to the end: (out, report, lines of the first run, lines of the second, state between)."""
    out = project / "run"
    first = []
    with pytest.raises(KeyboardInterrupt):
        run(project, out, callbacks={"student": [InterruptAtFirstSave()]}, lines=first)
    between = {"state": read(out / "pipeline.json")["stages"],
               "checkpoints": sorted(p.name for p in (out / "student.checkpoints").glob("checkpoint-*")),
               "student_exists": (out / "student").exists()}
    report, second = run(project, out)
    return out, report, first, second, between


def copy_of(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished[0], tmp_path / "run"))


def read(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- end to end

def test_every_artifact_report_and_plot_exists(finished):
    out, report = finished[:2]
    assert (out / "teacher" / "model.safetensors").is_file() and (out / "student" / "model.safetensors").is_file()
    for bundle, quantization in (("student-fp32", None), ("student-int8", "int8-dynamic")):
        for name in ("model.onnx", "vocab.txt", "runtime.json", "export.json"):
            assert (out / bundle / name).is_file(), (bundle, name)
        assert read(out / bundle / "runtime.json").get("quantization") == quantization
    assert (out / "baseline" / "model.pkl").is_file()
    for name in ("report.md", "report.json", "pipeline.json"):
        assert (out / name).is_file()
    plots = {"accuracy_vs_size.png", "accuracy_vs_throughput.png", "training_curves.png", "confusion_int8.png"}
    assert {Path(p).name for p in report["plots"]} == plots
    for name in plots:
        assert (out / "plots" / name).read_bytes()[:8] == PNG
    assert [(r["name"], r["artifact"], r["engine"]) for r in report["rows"]] == list(ROWS)


def test_table_numbers_equal_the_stage_reports(finished):
    out, report = finished[:2]
    rows = {(r["artifact"], r["engine"]): r for r in report["rows"]}
    teacher, student = read(out / "teacher" / "training.json"), read(out / "student" / "training.json")
    fp32, int8 = read(out / "student-fp32" / "export.json"), read(out / "student-int8" / "export.json")
    baseline = read(out / "baseline" / "baseline.json")
    expected = {("teacher", "torch"): teacher["final_eval"], ("teacher", "torch-input-order"): teacher["final_eval"],
                ("student", "torch"): student["final_eval"],
                ("student-fp32", "onnxruntime"): fp32["accuracy"]["onnx_fp32"],
                ("student-int8", "onnxruntime"): int8["accuracy"]["onnx_int8"],
                ("baseline", "scikit-learn"): baseline["final_eval"]}
    for key, stage in expected.items():
        assert rows[key]["accuracy"] == stage["accuracy"], key
        assert rows[key]["macro_f1"] == pytest.approx(stage["macro_f1"], abs=1e-12), key
    assert rows["teacher", "torch"]["parameters"] == teacher["parameters"]
    for engine in ("onnxruntime", "numpy"):
        assert rows["student-int8", engine]["parameters"] == student["parameters"]
    assert rows["baseline", "scikit-learn"]["parameters"] == baseline["parameters"]
    for (artifact, _), row in rows.items():
        assert row["size_bytes"] == dir_size_bytes(out / artifact)
        assert row["samples_per_second"] > 0
        assert len(row["samples_per_second_rounds"]) == report["rounds"]      # every pass, best reported
        assert row["samples_per_second"] == max(row["samples_per_second_rounds"])
        assert row["retention"] == pytest.approx(row["accuracy"] / rows["teacher", "torch"]["accuracy"])
        assert row["faster_than_teacher"] == pytest.approx(
            row["samples_per_second"] / rows["teacher", "torch"]["samples_per_second"])
        assert row["faster_than_user_path"] == pytest.approx(
            row["samples_per_second"] / rows["teacher", "torch-input-order"]["samples_per_second"])
    # the numpy runtime computes the fp32 bundle as onnxruntime does
    assert report["agreement"]["student-fp32: numpy runtime vs onnxruntime"] == 1.0
    # report.md shows the same figures
    markdown = (out / "report.md").read_text(encoding="utf-8")
    for row in report["rows"]:
        assert f"| {row['name']} |" in markdown and f"{100 * row['accuracy']:.2f}%" in markdown


def test_report_numpy_rows_run_the_numpy_runtime(finished, monkeypatch):
    """The report's "numpy runtime" rows predict with runtime.Classifier, even with onnxruntime
    unimportable (so their agreement with the onnxruntime rows is two engines agreeing)."""
    from distill.pipeline_report import load_predictor
    from runtime import Classifier

    out = finished[0]
    texts = ["a gripping film", "dull and lifeless", ""]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    for bundle in (out / "student-fp32", out / "student-int8"):
        predict = load_predictor(bundle, "numpy", batch_size=2, n_labels=2)
        np.testing.assert_array_equal(predict(texts), Classifier.load(bundle, batch_size=2).logits(texts))
        with pytest.raises(ImportError):
            load_predictor(bundle, "onnxruntime", batch_size=2, n_labels=2)


def test_every_engine_is_warmed_up_on_all_texts_before_any_is_timed():
    from distill.pipeline_report import timed_passes

    calls = []

    def engine(name):
        return lambda texts: calls.append((name, len(texts))) or np.zeros((len(texts), 2), np.float32)

    texts = ["a"] * 70
    results = timed_passes({"a": engine("a"), "b": engine("b")}, texts, rounds=2, log=lambda line: None)
    assert calls == [("a", 70), ("b", 70)] * 3          # warm-up pass, then two interleaved rounds
    assert {key: len(speeds) for key, (_, speeds) in results.items()} == {"a": 2, "b": 2}


# ---------------------------------------------------------------- skipping, resuming

def test_rerun_without_changes_skips_every_stage(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    before = (out / "report.json").read_bytes()
    _, lines = run(finished[0].parent, out)
    assert statuses(lines) == {stage: "skipped" for stage in STAGES}
    assert (out / "report.json").read_bytes() == before


def test_a_changed_setting_reruns_only_the_stages_it_affects(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    teacher_weights = (out / "teacher" / "model.safetensors").read_bytes()
    report, lines = run(finished[0].parent, out, sets=["baseline.C=2", "export.weight_type=qint8"])
    assert statuses(lines) == {"teacher": "skipped", "student": "skipped", "export_fp32": "skipped",
                               "export_int8": "ran", "baseline": "ran", "report": "ran"}
    assert any("changed: settings.weight_type" in line for line in lines)
    assert read(out / "student-int8" / "export.json")["quantization"]["weight_type"] == "qint8"
    assert read(out / "baseline" / "baseline.json")["settings"]["C"] == 2.0
    assert (out / "teacher" / "model.safetensors").read_bytes() == teacher_weights


def test_each_export_stage_reports_its_own_logit_deviation(finished):
    """fp32: ONNX vs torch; int8: int8 vs fp32 (not the fp32 figure again), printed so that a
    value far below 1e-4 does not read 0.0000."""
    out, second = finished[0], finished[3]
    stages = read(out / "pipeline.json")["stages"]
    fp32, int8 = read(out / "student-fp32" / "export.json"), read(out / "student-int8" / "export.json")
    fp32_diff = stages["export_fp32"]["summary"]["max_abs_logit_diff_vs_torch"]
    int8_diff = stages["export_int8"]["summary"]["max_abs_logit_diff_vs_fp32"]
    assert fp32_diff == fp32["parity"]["max_abs_logit_diff"]
    assert int8_diff == int8["parity"]["int8_max_abs_logit_diff_vs_fp32"] != int8["parity"]["max_abs_logit_diff"]
    line = next(line for line in second if "] export_int8: done in" in line)
    assert f"max_abs_logit_diff_vs_fp32 {int8_diff:.2e}" in line
    line = next(line for line in second if "] export_fp32: done in" in line)
    assert f"max_abs_logit_diff_vs_torch {fp32_diff:.2e}" in line


def test_a_tripped_int8_accuracy_gate_names_the_pipeline_setting_and_is_recorded_as_failed(
        finished, tmp_path, monkeypatch):
    out = copy_of(finished, tmp_path)
    monkeypatch.setattr("export.validate.accuracy_drop_points", lambda fp32, int8: 5.0)
    with pytest.raises(PipelineError) as error:
        run(finished[0].parent, out, sets=["export.max_accuracy_drop=1"])
    message = str(error.value)
    assert message.startswith("stage export_int8 failed: int8 accuracy is 5.00 points below fp32, "
                              "more than export.max_accuracy_drop 1: bundle not written")
    assert message.endswith("raise export.max_accuracy_drop (--set export.max_accuracy_drop=N)")
    assert "--max-accuracy-drop" not in message
    record = read(out / "pipeline.json")["stages"]["export_int8"]
    assert record["status"] == "failed" and record["error"] == message.split(" failed: ", 1)[1]
    assert record["last_done"]["status"] == "done"
    monkeypatch.undo()
    _, lines = run(finished[0].parent, out)
    assert statuses(lines) == {stage: "skipped" for stage in STAGES}


def test_quiet_silences_transformers_before_anything_runs(tmp_path, monkeypatch):
    import distill.predict

    calls = []
    monkeypatch.setattr(distill.predict, "silence_transformers", lambda: calls.append("silenced"))
    train = write_csv(tmp_path / "train.csv", make_reviews(4))
    result = CliRunner().invoke(main, ["pipeline", "--quiet", "--train", str(train)])     # no --eval: refused
    assert result.exit_code == 1 and "missing --eval" in result.output and calls == ["silenced"]
    result = CliRunner().invoke(main, ["pipeline", "--train", str(train)])
    assert result.exit_code == 1 and calls == ["silenced"]


def test_a_stage_that_fails_while_running_names_pipeline_keys(finished, tmp_path):
    """A token budget below the always-kept tokens is found by the student stage itself (after
    the teacher pass): its error names student.trim_max_tokens, the key the user sets."""
    out = copy_of(finished, tmp_path)
    with pytest.raises(PipelineError) as error:
        run(finished[0].parent, out, sets=["student.trim_vocab=true", "student.trim_max_tokens=5"])
    message = str(error.value)
    assert message.startswith("stage student failed: student.trim_max_tokens: max_tokens 5 is below")
    assert "--trim-max-tokens" not in message


def test_pipeline_json_follows_the_umask(tmp_path):
    import os

    from distill.pipeline_state import PipelineState

    previous = os.umask(0o022)
    try:
        PipelineState(tmp_path).save()
    finally:
        os.umask(previous)
    assert (tmp_path / "pipeline.json").stat().st_mode & 0o777 == 0o644


def test_the_report_says_how_many_eval_rows_were_skipped(finished, tmp_path):
    from distill.pipeline_report import build_report

    out = copy_of(finished, tmp_path)
    bad_eval = tmp_path / "dev-with-bad-rows.csv"
    rows = (finished[0].parent / "dev.csv").read_text(encoding="utf-8")
    bad_eval.write_text(rows + ",positive\n", encoding="utf-8")          # an empty text
    settings = build_settings(str(finished[0].parent / "pipeline.toml"), {"": {"out": str(out), "eval": str(bad_eval)}},
                              ["data.skip_bad_rows=true", "report.plots=false"], progress=False)
    report = build_report(settings, out, {}, log=lambda m: None)
    assert report["eval"]["skipped"] == {"empty text": 1}
    assert "(30 rows; skipped 1 row: 1 empty text)" in (out / "report.md").read_text(encoding="utf-8")


def test_an_interrupted_pipeline_resumes(finished):
    out, report, first, second, between = finished
    assert statuses(first) == {"teacher": "ran"}
    assert between["state"]["teacher"]["status"] == "done" and between["state"]["student"]["status"] == "running"
    assert between["checkpoints"] and not between["student_exists"]    # atomic save: no half-written model
    assert statuses(second) == {"teacher": "skipped", **{stage: "ran" for stage in STAGES[1:]}}
    assert any("student: running (interrupted, resuming from its last checkpoint)" in line for line in second)
    student = read(out / "student" / "training.json")
    assert student["resumed_from"] and student["resumed_from"].endswith(between["checkpoints"][-1])
    assert student["epochs"][-1]["epoch"] == 2
    assert not (out / "student.checkpoints").exists()
    assert {name: r["status"] for name, r in read(out / "pipeline.json")["stages"].items()} == \
        {stage: "done" for stage in STAGES}


def test_the_resumed_pipeline_makes_what_an_uninterrupted_run_makes(finished, tmp_path):
    """Same seed, same threads: the interrupted-then-resumed run and a straight run give the same
    weights, bundles and baseline, bit for bit."""
    from safetensors.numpy import load_file

    resumed = finished[0]
    straight = tmp_path / "straight"
    run(resumed.parent, straight, sets=["report.plots=false"])
    for model in ("teacher", "student"):
        ours, theirs = load_file(resumed / model / "model.safetensors"), load_file(straight / model / "model.safetensors")
        assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours), model
    for bundle in ("student-fp32", "student-int8"):
        assert (resumed / bundle / "model.onnx").read_bytes() == (straight / bundle / "model.onnx").read_bytes(), bundle
    baselines = [pickle.loads((out / "baseline" / "model.pkl").read_bytes())[-1] for out in (resumed, straight)]
    np.testing.assert_array_equal(baselines[0].coef_, baselines[1].coef_)


def test_the_report_has_rows_only_for_the_stages_this_run_enabled(finished, tmp_path):
    """A baseline/ and plots/ left in OUT by an earlier run are not this run's: no TF-IDF row (it
    may have learnt from other data), no plots directory and no plots path on the last line."""
    out = copy_of(finished, tmp_path)
    report, lines = run(finished[0].parent, out, sets=["baseline.enabled=false", "report.plots=false"])
    assert statuses(lines) == {**{stage: "skipped" for stage in STAGES[:4]}, "report": "ran"}
    assert [r["artifact"] for r in report["rows"]] == [r[1] for r in ROWS if r[1] != "baseline"]
    assert "TF-IDF" not in (out / "report.md").read_text(encoding="utf-8")
    assert report["plots"] == [] and not (out / "plots").exists()
    assert "plots" not in lines[-1] and lines[-1].startswith("\nreport: ")
    _, lines = run(finished[0].parent, out, sets=["baseline.enabled=false", "report.plots=false"])
    assert statuses(lines)["report"] == "skipped" and "plots" not in lines[-1]


class FailAtTrainBegin(TrainerCallback):
    """A stage that fails before its first training step."""

    def on_train_begin(self, args, state, control, **kwargs):
        raise RuntimeError("failed before the first step")


def test_a_fresh_start_after_an_interruption_says_it_discards_the_checkpoints(finished, tmp_path):
    """An interrupted stage rerun with an edited setting starts afresh, deleting the interrupted
    run's checkpoints: the progress line says so (and says nothing of checkpoints otherwise)."""
    out = copy_of(finished, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run(finished[0].parent, out, sets=["student.epochs=3"], callbacks={"student": [InterruptAtFirstSave()]})
    assert list((out / "student.checkpoints").glob("checkpoint-*"))
    lines = []
    with pytest.raises(PipelineError, match="stage student failed"):
        run(finished[0].parent, out, sets=["student.epochs=4"], callbacks={"student": [FailAtTrainBegin()]}, lines=lines)
    line = next(line for line in lines if "] student: running" in line)
    assert "running (changed: settings.epochs; the interrupted run's checkpoints are discarded) ->" in line
    assert not list((out / "student.checkpoints").glob("checkpoint-*"))
    assert not any("discarded" in line for line in finished[2] + finished[3])


def test_a_failed_run_keeps_the_finished_stages_skippable(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    teacher_weights = (out / "teacher" / "model.safetensors").read_bytes()
    with pytest.raises(PipelineError, match="stage teacher failed: RuntimeError"):
        run(finished[0].parent, out, sets=["teach.lr=1e-3"], callbacks={"teacher": [FailAtTrainBegin()]})
    record = read(out / "pipeline.json")["stages"]["teacher"]    # failed, not "running"; its error kept
    assert record["status"] == "failed" and record["error"] == "RuntimeError: failed before the first step"
    assert record["last_done"]["status"] == "done"
    _, lines = run(finished[0].parent, out)
    assert statuses(lines) == {stage: "skipped" for stage in STAGES}
    assert (out / "teacher" / "model.safetensors").read_bytes() == teacher_weights


def test_the_reason_to_run_names_changes_against_the_last_finished_run(tmp_path):
    from distill.pipeline_state import PipelineState, fingerprint, path_digest

    output = tmp_path / "teacher"
    output.mkdir()
    (output / "model.safetensors").write_bytes(b"weights")
    done, failed = {"settings": {"lr": 1, "epochs": 3}}, {"settings": {"lr": 2, "epochs": 3}}
    state = PipelineState(tmp_path)
    state.start("teacher", fingerprint(done), done)
    state.finish("teacher", path_digest(output), 1.0, {})
    state.start("teacher", fingerprint(failed), failed)          # ... and it fails
    state = PipelineState(tmp_path)                                # the next run
    assert state.is_current("teacher", fingerprint(done), output)
    assert state.last_done("teacher")["digest"] == path_digest(output)
    changed = {"settings": {"lr": 1, "epochs": 4}}
    assert state.why_run("teacher", fingerprint(changed), changed, output) == "changed: settings.epochs"
    assert state.why_run("teacher", fingerprint(failed), failed, output) == "interrupted"


def test_the_contents_of_every_input_file_are_in_the_fingerprints_of_the_stages_that_read_them(tmp_path):
    """Each file or model directory a stage reads, edited in place (same path, same settings),
    changes the fingerprints of the stages that read it and of no other."""
    from distill.data import DataOptions
    from distill.pipeline import input_files, stage_inputs
    from distill.pipeline_config import PipelineSettings
    from distill.pipeline_state import fingerprint

    def write(name: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{name}\n", encoding="utf-8")
        return path

    files = {"train": write("train.csv"), "eval": write("dev.csv"), "label_names": write("names.txt"),
             "model": write("base/model.safetensors"), "label_descriptions": write("descriptions.txt"),
             "teach_unlabeled": write("pet.txt"), "unlabeled": write("unlabeled.txt"),
             "ensemble": write("t2/model.safetensors"), "back_translate": write("backward/model.safetensors")}
    write("forward/model.safetensors")
    readers = {"train": {"teacher", "student", "baseline"}, "eval": set(STAGES), "label_names": set(STAGES),
               "model": {"teacher"}, "label_descriptions": {"teacher"}, "teach_unlabeled": {"teacher"},
               "unlabeled": {"student"}, "ensemble": {"student"}, "back_translate": {"student"}}
    settings = PipelineSettings(
        train=str(files["train"]), eval=str(files["eval"]), out=str(tmp_path / "out"),
        data=DataOptions(label_names=str(files["label_names"])),
        teach={"model": str(tmp_path / "base"), "label_descriptions": str(files["label_descriptions"]),
               "unlabeled": str(files["teach_unlabeled"])},
        student={"unlabeled": str(files["unlabeled"]), "ensemble": (str(tmp_path / "t2"),),
                 "back_translate": (str(tmp_path / "forward"), str(tmp_path / "backward"))})

    def fingerprints() -> dict:
        found, digests = input_files(settings), dict.fromkeys(STAGES, "unchanged output")
        return {stage: fingerprint(stage_inputs(stage, settings, found, digests)) for stage in STAGES}

    before = fingerprints()
    for name, path in files.items():
        path.write_text("edited\n", encoding="utf-8")
        after = fingerprints()
        assert {stage for stage in STAGES if after[stage] != before[stage]} == readers[name], name
        before = after


def test_output_neutral_settings_do_not_rerun_any_stage(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    sets = ["teach.eval_batch_size=7", "teach.logging_steps=3", f"student.cache_dir={tmp_path / 'cache'}",
            "student.eval_batch_size=7", "student.logging_steps=3"]
    _, lines = run(finished[0].parent, out, sets=sets)
    assert statuses(lines) == {stage: "skipped" for stage in STAGES}


def test_the_teacher_batch_size_counts_in_the_students_fingerprint(project):
    """Another teacher batch size pads the teacher's batches otherwise and moves its logits by
    about 1e-8: the student retrains rather than being skipped as if its weights were the same."""
    from distill.pipeline import decisive

    def student(*sets):
        settings = build_settings(str(project / "pipeline.toml"), {"": {"out": "o"}}, sets, progress=False)
        return decisive(settings.student_settings())

    assert student("student.teacher_batch_size=5") != student()
    assert student("student.eval_batch_size=7") == student()


def test_output_neutral_settings_are_ones_a_resume_may_change():
    from distill.pipeline import OUTPUT_NEUTRAL
    from distill.training import RESUMABLE_CHANGES

    assert OUTPUT_NEUTRAL <= RESUMABLE_CHANGES
    assert not OUTPUT_NEUTRAL & {"epochs", "eval", "early_stopping", "metric"}     # they change the model


def test_a_path_spelled_otherwise_is_the_same_input_and_new_contents_are_not(tmp_path, monkeypatch):
    """Files and models named by a relative or an absolute path: same bytes, same fingerprints;
    edited bytes change them, and the progress line names the input."""
    from distill.data import DataOptions
    from distill.pipeline import input_files, stage_inputs
    from distill.pipeline_config import PipelineSettings
    from distill.pipeline_state import changed_keys, fingerprint

    monkeypatch.chdir(tmp_path)
    for name in ("train.csv", "dev.csv", "names.txt", "unlabeled.txt", "base/model.safetensors"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(f"{name}\n", encoding="utf-8")

    def inputs(root: str) -> dict:
        settings = PipelineSettings(train=f"{root}train.csv", eval=f"{root}dev.csv", out="out",
                                    data=DataOptions(label_names=f"{root}names.txt"), teach={"model": f"{root}base"},
                                    student={"unlabeled": f"{root}unlabeled.txt"})
        files, digests = input_files(settings), dict.fromkeys(STAGES, "output")
        return {stage: stage_inputs(stage, settings, files, digests) for stage in STAGES}

    relative, absolute = inputs(""), inputs(f"{tmp_path}/")
    assert all(fingerprint(relative[s]) == fingerprint(absolute[s]) for s in STAGES)
    (tmp_path / "unlabeled.txt").write_text("other texts\n", encoding="utf-8")
    edited = inputs("")
    assert changed_keys(relative["student"], edited["student"]) == ["unlabeled"]
    assert all(fingerprint(relative[s]) == fingerprint(edited[s]) for s in STAGES if s != "student")


# ---------------------------------------------------------------- settings

def test_config_file_flags_and_set_precedence(project, monkeypatch, tmp_path):
    config = tmp_path / "sub" / "p.toml"
    config.parent.mkdir()
    shutil.copy(project / "train.csv", config.parent / "train.csv")
    (config.parent / "more" / "t2").mkdir(parents=True)
    (config.parent / "more" / "t2" / "config.json").write_text("{}", encoding="utf-8")   # checked up front
    config.write_text(f'train = "train.csv"\neval = "{project / "dev.csv"}"\nout = "out"\n'
                      '[data]\ntext-column = "text"\nlabel_column = "label"\n'
                      '[teach]\nepochs = 2\nseed = 7\n[student]\nlayers = 1\nlayer_map = [0]\nensemble = ["more/t2"]\n'
                      '[export]\nweight_type = "qint8"\n', encoding="utf-8")
    seen = {}
    monkeypatch.setattr("distill.pipeline.run_pipeline", lambda settings: seen.update(s=settings))
    args = ["pipeline", "--config", str(config), "--teacher-epochs", "5", "--layers", "2",
            "--set", "student.layer_map=[0, 1]", "--set", "student.temperature=3", "--set", "export.per_channel=true"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    s = seen["s"]
    assert Path(s.train) == config.parent / "train.csv" and Path(s.out) == config.parent / "out"  # file-relative
    teach, student = s.teach_settings(), s.student_settings()
    assert teach["epochs"] == 5.0 and teach["seed"] == 7          # flag over file; file over default
    assert teach["lr"] == 5e-5                                      # default
    assert student["layers"] == 2 and student["layer_map"] == (0, 1) and student["temperature"] == 3.0
    assert student["seed"] == 7                                     # inherited from [teach]
    assert student["ensemble"] == (str(config.parent / "more" / "t2"),)   # file-relative, a tuple
    assert s.export_settings(int8=True)["weight_type"] == "qint8" and s.export_settings(int8=True)["per_channel"]
    assert "weight_type" not in s.export_settings(int8=False)     # the fp32 export ignores int8 settings
    assert s.data.text_column == "text"

    # a flag left at its default does not override the file; one given does; --set beats flags
    config.write_text(config.read_text().replace('text-column = "text"', 'text_column = "review"'))
    result = CliRunner().invoke(main, ["pipeline", "--config", str(config)])
    assert result.exit_code == 1 and "no column 'review'" in result.output  # the file's, checked up front
    seen.clear()
    CliRunner().invoke(main, ["pipeline", "--config", str(config), "--text-column", "text",
                              "--teacher-epochs", "5", "--set", "teach.epochs=9"])
    assert seen["s"].data.text_column == "text" and seen["s"].teach_settings()["epochs"] == 9.0


@pytest.mark.parametrize("text,message", [
    ('[teach]\nepoch = 2\n', "unknown key 'epoch' in [teach]; valid keys:"),
    ('[teacher]\nepochs = 2\n', "unknown section [teacher]"),
    ('[teach]\nout = "x"\n', "teach.out is set by the pipeline itself (a top-level key)"),
    ('[student]\nteacher = "x"\n', "student.teacher is set by the pipeline itself (the teacher stage's output)"),
    ('[student]\nlayers = "two"\n', "student.layers: expected an integer"),
    ('[report]\nplots = 1\n', "report.plots: expected true or false"),
    ('[teach\n', "not valid TOML"),
])
def test_bad_config_files_name_the_problem(project, tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(f'train = "{project / "train.csv"}"\neval = "{project / "dev.csv"}"\nout = "o"\n{text}')
    with pytest.raises(PipelineConfigError, match=re.escape(message)):
        build_settings(str(config), {})


@pytest.mark.parametrize("assignment,message", [
    ("student.alpha=2", "student.alpha must be in [0, 1], got 2.0"),
    ("student.temperature=abc", "student.temperature: expected a number, got 'abc'"),
    ('teach.epochs="three"', "teach.epochs: expected a number, got 'three'"),
    ("teach.lr=true", "teach.lr: expected a number, got True"),
    ("teach.model=3.5", "teach.model: expected a string, got 3.5"),
    ("student.layer_map=0,x", "student.layer_map: expected a list, each entry an integer, got ['0', 'x']"),
    ("student.back_translate=only-one", "student.back_translate: expected 2 entries, got 1"),
    ("student.layers=3", "student.layers must be between 1 and the teacher's 2, got 3"),   # the base model has 2
    ("student.seed=99999999999", "student.seed 99999999999: must be in 0..4294967295"),
    ("teach.seed=4294967296", "teach.seed 4294967296: must be in 0..4294967295"),
    ("student.hidden_size=33", "student.hidden_size 33 is not a multiple of student.heads 2"),    # 2 heads
    ("student.augment_ops=shuffle", "student.augment_ops: unknown augmentation op(s) shuffle"),
    ("student.augment_rate=0", "student.augment_rate must be in (0, 1], got 0"),
    ("teach.class_weights=some", "teach.class_weights must be none or balanced"),
    ("teach.metric=f1", "teach.metric: 'f1' is not one of accuracy, macro_f1, auc, loss"),
    ("data.format=xml", "data.format: 'xml' is not one of csv, tsv, jsonl, txt"),
    ("data.label_names=missing.txt", "data.label_names: no such file: missing.txt"),
    ("teach.model=3", "teach.model: expected a string, got 3"),    # was the folder "3"
    ("student.resume=true", "--set: student.resume is set by the pipeline itself (--force, --quiet and reruns "
                            "decide it)"),                                                   # was "unknown key"
    ("data.text_column=label", "name them with data.text_column and data.label_column"),   # not the flags
    ('student.back_translate=["nope1", "nope2"]', "student.back_translate: not a directory (a local model expected): "),
    ('student.ensemble=["nope"]', "student.ensemble: not a directory (a local model expected): "),
    ("export.weight_type=int4", "export.weight_type: 'int4' is not one of qint8, quint8"),
    ("export.opset=17", "export.opset: must lie in 18.."),
    ("export.max_accuracy_drop=-5", "export.max_accuracy_drop: must be at least 0, got -5"),
    ("export.max_length=129", "export.max_length: the base model reads at most 128 tokens"),
    ("export.samples=64", "unknown key 'samples' in [export]; valid keys: weight_type, per_channel, opset, max_length, max_accuracy_drop"),
    ("baseline.analyzer=letters", "baseline.analyzer must be auto, word, char or char_wb"),
    ("baseline.ngram_range=[2, 1]", "baseline.ngram_range: expected [low, high] with 1 <= low <= high"),
    ("baseline.C=0", "baseline.C: must be > 0"),
    ("report.rounds=0", "report.rounds: must be at least 1, got 0"),
    ("report.batch_size=0", "report.batch_size: must be at least 1, got 0"),
])
def test_every_stage_setting_is_checked_before_any_stage_runs(project, tmp_path, assignment, message):
    with pytest.raises(PipelineConfigError, match=re.escape(message)):
        build_settings(str(project / "pipeline.toml"), {"": {"out": str(tmp_path / "o")}}, [assignment])


def test_a_missing_train_or_eval_file_names_the_key_and_the_flag(project, tmp_path):
    from distill.pipeline_config import _coerce

    toml = tmp_path / "p.toml"
    toml.write_text(f'train = "../nope.csv"\neval = "{project / "dev.csv"}"\n', encoding="utf-8")
    with pytest.raises(PipelineConfigError, match=re.escape(
            f"train (--train, or the key train of --config): no such file: {tmp_path / '../nope.csv'}")):
        build_settings(str(toml), {"": {"out": str(tmp_path / "o")}})
    assert _coerce("data", "text_column", 3, "str") == "3"          # a headerless file's column index
    assert _coerce("", "out", 2024, "str") == "2024"                 # --set out=2024: a folder name


def test_an_opset_the_exporter_cannot_produce_is_refused_before_any_stage_runs(project, tmp_path):
    """onnx knows opsets past the exporter's (28 against 25 with onnx 1.23, onnxscript 0.7); the
    export of such an opset would fail only after the teacher and the student trained."""
    from export.onnx_export import max_opset

    newest = max_opset()
    build_settings(str(project / "pipeline.toml"), {"": {"out": str(tmp_path / "o")}}, [f"export.opset={newest}"])
    with pytest.raises(PipelineConfigError, match=re.escape(f"export.opset: must lie in 18..{newest} (")) as error:
        build_settings(str(project / "pipeline.toml"), {"": {"out": str(tmp_path / "o")}}, [f"export.opset={newest + 1}"])
    assert str(error.value).endswith(f"got {newest + 1}")


def test_the_stage_lines_and_the_table_go_to_stdout(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    result = CliRunner().invoke(main, ["pipeline", "--config", str(finished[0].parent / "pipeline.toml"),
                                       "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"[1/6] teacher: unchanged, skipped ({out / 'teacher'})" in result.stdout
    assert "student int8 ONNX" in result.stdout and f"report: {out / 'report.md'}" in result.stdout
    assert result.stderr == ""


def test_a_bad_setting_of_a_later_stage_fails_the_command_before_the_teacher_trains(project, tmp_path):
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["pipeline", "--config", str(project / "pipeline.toml"), "--out", str(out),
                                       "--quiet", "--set", "report.rounds=0"])
    assert result.exit_code == 1 and "report.rounds: must be at least 1, got 0" in result.output
    assert not out.exists()


def test_a_bad_data_row_fails_the_command_before_out_is_made(project, tmp_path):
    out, bad = tmp_path / "o", tmp_path / "bad_eval.csv"
    bad.write_text('text,label\na fine film,positive\n"never closed,negative\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["pipeline", "--config", str(project / "pipeline.toml"), "--out", str(out),
                                       "--eval", str(bad), "--quiet"])
    assert result.exit_code == 1 and f"{bad}, line 3: malformed CSV" in result.output, result.output
    assert not out.exists()


def test_list_settings_become_typed_tuples_and_no_cache_needs_no_cache_dir(project, tmp_path):
    def student(*sets):
        settings = build_settings(str(project / "pipeline.toml"), {"": {"out": str(tmp_path / "o")}}, sets)
        return settings, settings.student_settings()

    assert student("student.layers=2", "student.layer_map=1,0")[1]["layer_map"] == (1, 0)
    assert student("student.layers=2", "student.layer_map=[1, 0]")[1]["layer_map"] == (1, 0)
    assert student("student.layer_map=1")[1]["layer_map"] == (1,)
    assert student("student.augment_ops=swap,delete")[1]["augment_ops"] == ("swap", "delete")
    settings, values = student("student.no_cache=true")
    assert values["no_cache"] is True
    assert settings.student_config(tmp_path / "t", tmp_path / "s", resume=False).cache_dir is None


def test_set_default_restores_the_built_in_default_of_a_key_the_file_sets(project, tmp_path):
    """TOML has no null: `--set KEY=default` (the bare word) gives an optional key its built-in
    None back; the quoted word is a plain string, and an unknown key is still an error."""
    config = tmp_path / "p.toml"
    config.write_text(CONFIG.replace("[student]\n", "[student]\nearly_stopping = 2\ntrim_vocab = true\ntrim_max_tokens = 500\n")
                      .replace("[teach]\n", "[teach]\nclass_weights = \"balanced\"\n")
                      .replace('"train.csv"', f'"{project / "train.csv"}"').replace('"dev.csv"', f'"{project / "dev.csv"}"'))

    def settings(*sets):
        return build_settings(str(config), {"": {"out": str(tmp_path / "o")}}, sets)

    student = settings().student_settings()
    assert student["early_stopping"] == 2 and student["trim_max_tokens"] == 500
    with pytest.raises(PipelineConfigError, match="student.early_stopping: expected an integer, got 'none'"):
        settings("student.early_stopping=none")
    s = settings("student.early_stopping=default", "student.trim-max-tokens=default", "teach.class_weights=default",
                 "student.layers=default")
    student = s.student_settings()
    assert student["early_stopping"] is None and student["trim_max_tokens"] is None and student["layers"] is None
    assert s.teach_settings()["class_weights"] == "none" and s.teach_settings()["epochs"] == 4
    assert settings("teach.class_weights=none").teach_settings()["class_weights"] == "none"
    assert settings("student.early_stopping=default", "student.early_stopping=3").student_settings()["early_stopping"] == 3
    assert parse_assignment('teach.model="default"') == ("teach", "model", "default")
    with pytest.raises(PipelineConfigError, match="unknown key 'early_stoping' in \\[student\\]"):
        settings("student.early_stoping=default")


def test_missing_inputs_and_set_syntax(project):
    with pytest.raises(PipelineConfigError, match="missing --eval, --out"):
        build_settings(None, {"": {"train": str(project / "train.csv")}})
    with pytest.raises(PipelineConfigError, match="expected SECTION.KEY=VALUE"):
        parse_assignment("student.layers")
    assert parse_assignment("student.layer_map=[0, 2]") == ("student", "layer_map", [0, 2])
    assert parse_assignment("teach.model=some/dir") == ("teach", "model", "some/dir")


# ---------------------------------------------------------------- --extend-vocab

NEW_CHARS = "鑫燚犇龘"   # not in the tiny vocabulary (tests/tiny.py CJK list)


def test_extend_vocabulary_adds_tokens_and_mean_initialises_rows(tmp_path):
    import torch

    from distill.predict import load_model_dir
    from distill.vocab_extend import extend_vocabulary

    base = make_tiny_model(tmp_path / "base")
    model, tokenizer, _ = load_model_dir(base)
    old = model.get_input_embeddings().weight.detach().clone()
    assert all(tokenizer.convert_tokens_to_ids(c) == tokenizer.unk_token_id for c in NEW_CHARS)
    texts = [f"the film {NEW_CHARS[:2]} was great", f"好{NEW_CHARS[2:]}", "tokenizationism tokenizationism"]
    new_tokenizer, report = extend_vocabulary(model, tokenizer, texts, words=1)
    added = report["vocab_after"] - report["vocab_before"]
    assert report["added_cjk_characters"] == 4 and report["added_words"] == 1 and added == 5
    assert report["training_words_with_unk_before"] == 4 and report["training_words_with_unk_after"] == 0
    weight = model.get_input_embeddings().weight.detach()
    assert weight.shape == (old.shape[0] + added, old.shape[1]) and model.config.vocab_size == weight.shape[0]
    assert torch.equal(weight[: old.shape[0]], old)                      # old rows untouched
    ids = new_tokenizer.convert_tokens_to_ids(list(NEW_CHARS))
    assert ids == list(range(old.shape[0], old.shape[0] + 4))            # appended in first-seen order
    mean, std = old.mean(dim=0), old.std(dim=0)
    rows = weight[ids]                                                    # default init "sample"
    assert report["init"] == "sample" and not torch.allclose(rows[0], rows[1])
    assert torch.allclose(((rows - mean) / std).pow(2).mean(), torch.tensor(1.0), atol=0.35)  # 4 x 32 draws
    word_id = new_tokenizer.convert_tokens_to_ids("tokenizationism")
    pieces = [t.id for t in tokenizer.backend_tokenizer.model.tokenize("tokenizationism")]
    assert len(pieces) > 1 and torch.allclose(weight[word_id], old[pieces].mean(dim=0))
    assert new_tokenizer.tokenize(f"a{NEW_CHARS[0]}b") == ["a", NEW_CHARS[0], "b"]


def test_extend_vocabulary_mean_init_gives_every_new_character_the_mean_row(tmp_path):
    import torch

    from distill.predict import load_model_dir
    from distill.vocab_extend import extend_vocabulary

    model, tokenizer, _ = load_model_dir(make_tiny_model(tmp_path / "base"))
    old = model.get_input_embeddings().weight.detach().clone()
    new_tokenizer, report = extend_vocabulary(model, tokenizer, [NEW_CHARS], init="mean")
    weight = model.get_input_embeddings().weight.detach()
    assert report["init"] == "mean"
    for i in new_tokenizer.convert_tokens_to_ids(list(NEW_CHARS)):
        assert torch.allclose(weight[i], old.mean(dim=0))
    fresh_model, fresh_tokenizer, _ = load_model_dir(tmp_path / "base")
    with pytest.raises(ValueError, match="init must be one of"):
        extend_vocabulary(fresh_model, fresh_tokenizer, [NEW_CHARS], init="zeros")


def test_teach_extend_vocab_saves_a_tokenizer_that_splits_new_characters(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = make_tiny_model(tmp_path / "base")
    rows = make_reviews(24, seed=1) + [(f"这部电影{NEW_CHARS[0]}很好", "positive"), (f"{NEW_CHARS[1]}很不好", "negative")]
    train = write_csv(tmp_path / "train.csv", rows)
    result = CliRunner().invoke(main, ["teach", "--train", str(train), "--model", str(base), "--out",
                                       str(tmp_path / "t"), "--epochs", "1", "--extend-vocab", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "vocabulary extended:" in result.output
    report = read(tmp_path / "t" / "training.json")
    extension = report["vocab_extension"]
    assert extension["added_cjk_characters"] == 2 and report["config"]["extend_vocab"] is True
    vocab = (tmp_path / "t" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == extension["vocab_after"] and vocab[-2:] == [NEW_CHARS[0], NEW_CHARS[1]]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "t")
    ids = tokenizer(f"好{NEW_CHARS[0]}", add_special_tokens=False)["input_ids"]
    assert ids[-1] == len(vocab) - 2 and tokenizer.unk_token_id not in ids
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "t")
    assert model.get_input_embeddings().weight.shape[0] == len(vocab)


def test_extend_vocab_refuses_a_frozen_encoder(tmp_path, reviews_csv):
    train, _ = reviews_csv
    result = CliRunner().invoke(main, ["teach", "--train", str(train), "--model", str(tmp_path), "--out",
                                       str(tmp_path / "t"), "--extend-vocab", "--freeze-encoder"])
    assert result.exit_code != 0 and "--freeze-encoder" in result.output


# ---------------------------------------------------------------- the command line

def test_pipeline_help_is_instant_and_lists_the_options():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom distill.cli import main\n"
            "r = CliRunner().invoke(main, ['pipeline', '--help'])\nassert r.exit_code == 0, r.output\n"
            "print(r.output)\nprint(sorted(m for m in ('torch', 'transformers', 'sklearn', 'onnx') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for option in ("--train", "--eval", "--out", "--config", "--set", "--force", "--text-column"):
        assert option in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------- bench/run.py thucnews (CI size)

@pytest.mark.slow
def test_thucnews_bench_runs_the_pipeline_on_a_tiny_chinese_vocabulary_model(shared_data, tmp_path):
    out = tmp_path / "thucnews"
    cmd = [sys.executable, "bench/run.py", "thucnews", "--data", str(shared_data), "--out", str(out),
           "--n-train", "200", "--n-eval", "60", "--tiny-layers", "2", "--tiny-hidden", "32",
           "--teacher-epochs", "1", "--student-epochs", "1", "--set", "export.max_accuracy_drop=100",
           "--set", "student.augment_factor=0"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    bench = read(out / "bench.json")
    tiny = bench["tiny_model"]     # the shared vocabulary file's damage, measured
    assert tiny["lines"] == 21128 and tiny["crlf_lines"] >= 21127 and tiny["distinct_tokens"] == 6456
    vocab = (out / "tiny-chinese-bert" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == len(set(vocab)) == tiny["tokens_kept"] == 6456 - tiny["tokens_with_inner_space"]
    assert all(len(t.split()) == 1 and t == t.strip() for t in vocab)
    teacher = read(out / "teacher" / "training.json")
    extension = teacher["vocab_extension"]
    assert extension["added_cjk_characters"] > 100 and extension["training_words_with_unk_after"] == 0
    assert teacher["labels"] == (shared_data / "thucnews" / "class.txt").read_text().split()
    report = read(out / "report.json")
    assert len(report["rows"]) == len(ROWS) == 8 and report["eval"]["rows"] == 60
    assert report["agreement"]["student-fp32: numpy runtime vs onnxruntime"] == 1.0
    bundle_vocab = (out / "student-int8" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert bundle_vocab == (out / "student" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(bundle_vocab) == extension["vocab_after"]


# ---------------------------------------------------------------- what each flag and key changes

def test_the_flags_reach_the_configs_of_their_stages(project, _tiny_model_master, tmp_path, monkeypatch):
    """Each FLAG_KEYS flag, given a value unlike the file's and the default, arrives in the config
    the teacher or the student stage is run with; --no-baseline leaves the baseline stage out."""
    from distill.pipeline import FLAG_KEYS, active_stages

    seen = {}
    monkeypatch.setattr("distill.pipeline.run_pipeline", lambda settings: seen.update(s=settings))
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("a film\nanother film\n", encoding="utf-8")

    def configs(*flags):
        seen.clear()
        result = CliRunner().invoke(main, ["pipeline", "--config", str(project / "pipeline.toml"), "--out",
                                           str(tmp_path / "o"), *map(str, flags)])
        assert result.exit_code == 0, result.output
        s = seen["s"]
        return (s.teach_config(tmp_path / "t", resume=False), s.student_config(tmp_path / "t", tmp_path / "s", resume=False),
                active_stages(s))

    flags = {"model": _tiny_model_master, "student_epochs": 3.0, "max_train_samples": 40, "max_length": 24,
             "seed": 5, "extend_vocab": True, "unlabeled": unlabeled}
    assert set(flags) == set(FLAG_KEYS) - {"teacher_epochs", "layers"}    # those two are tested above
    teach, student, stages = configs()
    assert (teach.model, student.epochs, teach.max_train_samples, teach.max_length, teach.seed, teach.extend_vocab,
            student.unlabeled) == (str(project / "base"), 2.0, None, 32, 42, False, None)   # file and defaults
    assert "baseline" in stages
    args = [arg for name, value in flags.items()
            for arg in ([f"--{name.replace('_', '-')}"] + ([] if value is True else [value]))]
    teach, student, stages = configs(*args, "--no-baseline")
    assert (teach.model, student.epochs, teach.max_train_samples, teach.max_length, teach.seed, teach.extend_vocab,
            student.unlabeled) == (str(_tiny_model_master), 3.0, 40, 24, 5, True, str(unlabeled))
    assert (student.max_train_samples, student.seed) == (40, 5)            # the student inherits the teacher's
    assert stages == [stage for stage in STAGES if stage != "baseline"]


def stub_stages(monkeypatch, ran: list, keep=()):
    """Replace the stage runners (but those in keep) by stubs that note their stage in `ran`;
    the report stage returns the report.json OUT already holds."""
    import distill.pipeline
    import distill.pipeline_report

    def stub(stage):
        return lambda *args, **kwargs: ran.append(stage) or {}

    for name, stage in (("run_teacher", "teacher"), ("run_student", "student"), ("run_baseline_stage", "baseline")):
        if stage not in keep:
            monkeypatch.setattr(distill.pipeline, name, stub(stage))
    monkeypatch.setattr(distill.pipeline, "run_export",
                        lambda settings, out, int8: ran.append("export_int8" if int8 else "export_fp32") or {})
    monkeypatch.setattr(distill.pipeline_report, "build_report",
                        lambda settings, out, stages, log: ran.append("report") or read(out / "report.json"))


def test_force_reruns_every_stage_even_unchanged_ones(finished, tmp_path, monkeypatch):
    out = copy_of(finished, tmp_path)
    ran = []
    stub_stages(monkeypatch, ran)
    args = ["pipeline", "--config", str(finished[0].parent / "pipeline.toml"), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert statuses(result.stdout.splitlines()) == {stage: "skipped" for stage in STAGES} and ran == []
    result = CliRunner().invoke(main, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert statuses(result.stdout.splitlines()) == {stage: "ran" for stage in STAGES} and ran == STAGES
    assert f"[1/6] teacher: running (--force) -> {out / 'teacher'}" in result.stdout


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_keeps_the_training_progress_bars_off_stderr(finished, tmp_path, monkeypatch, quiet):
    """The teacher stage trains for real (one epoch: a changed setting); the later stages are stubs.
    transformers' own switch (silence_transformers) is left out: only the stages' progress counts."""
    import distill.predict

    out = copy_of(finished, tmp_path)
    monkeypatch.setattr(distill.predict, "silence_transformers", lambda: None)
    ran = []
    stub_stages(monkeypatch, ran, keep=("teacher",))
    result = CliRunner().invoke(main, ["pipeline", "--config", str(finished[0].parent / "pipeline.toml"),
                                       "--out", str(out), "--teacher-epochs", "1", *(["--quiet"] if quiet else [])])
    assert result.exit_code == 0, result.output
    assert statuses(result.stdout.splitlines())["teacher"] == "ran" and "teacher" not in ran
    assert read(out / "teacher" / "training.json")["epochs"][-1]["epoch"] == 1
    steps = re.findall(r"\r *\d+%\|[^|\r]*\| *\d+/\d+ \[", result.stderr)    # the Trainer's bar has no title
    assert (steps == []) if quiet else steps, result.stderr


class ReachedTraining(Exception):
    """Raised by StopAtTrainBegin: the stage read its data and built its Trainer."""


class StopAtTrainBegin(TrainerCallback):
    def __init__(self):
        self.rows = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.rows = len(kwargs["train_dataloader"].dataset)
        raise ReachedTraining


def test_the_data_keys_reach_the_teacher_and_the_student(finished, tmp_path):
    """Files that read right only with [data] format, text_column, label_column and label_names
    (JSON lines under an extension naming no format, other keys, integer labels named by a
    file): the teacher and the student stages both read them and get as far as training."""
    from distill.student import distill_student
    from distill.teacher import teach

    ids = {"positive": 0, "negative": 1}
    for name, rows in (("train.data", make_reviews(80, seed=1)), ("dev.data", make_reviews(30, seed=2))):
        (tmp_path / name).write_text("".join(json.dumps({"review": text, "sentiment": ids[label]}) + "\n"
                                             for text, label in rows), encoding="utf-8")
    (tmp_path / "names.txt").write_text("positive\nnegative\n", encoding="utf-8")
    config = tmp_path / "p.toml"
    config.write_text(CONFIG.replace('"train.csv"', '"train.data"').replace('"dev.csv"', '"dev.data"')
                      .replace('model = "base"', f'model = "{finished[0].parent / "base"}"')
                      + '\n[data]\nformat = "jsonl"\ntext_column = "review"\nlabel_column = "sentiment"\n'
                        'label_names = "names.txt"\n', encoding="utf-8")
    settings = build_settings(str(config), {}, progress=False)
    stages = {"teacher": lambda stop: teach(settings.teach_config(tmp_path / "teacher", False), callbacks=[stop]),
              "student": lambda stop: distill_student(settings.student_config(
                  finished[0] / "teacher", tmp_path / "student", False), callbacks=[stop])}
    for stage, rows in (("teacher", 80), ("student", 80 * 2)):              # augment_factor 1: a copy of each
        stop = StopAtTrainBegin()
        with pytest.raises(ReachedTraining):
            stages[stage](stop)
        assert stop.rows == rows, stage


def test_a_baseline_over_texts_without_words_uses_characters_or_says_how_to():
    """Texts of one character, punctuation or emoji left the word vectorizer an empty vocabulary:
    the pipeline stopped at its last stage with scikit-learn's own message."""
    from distill.pipeline_baseline import fit_baseline

    texts, labels = ["!!!", "...", "a", "b", "??", ":)"], [0, 1, 0, 1, 0, 1]
    settings = {"analyzer": "auto", "ngram_range": None, "sublinear_tf": True, "min_df": 1,
                "max_features": None, "C": 0.5}
    model, vec = fit_baseline(texts, labels, settings)
    assert vec["analyzer"] == "char" and vec["ngram_range"] == (1, 3) and "!" in model[0].vocabulary_
    with pytest.raises(ValueError, match='baseline.analyzer = "word" finds no word of 2\\+ characters'):
        fit_baseline(texts, labels, {**settings, "analyzer": "word"})


def test_the_baseline_svm_is_seeded_not_left_to_numpys_global_generator():
    """LinearSVC shuffles with numpy's global generator unless seeded: the baseline stage rerun
    alone (teacher and student skipped, nothing else seeding it) gave other coefficients."""
    from distill.pipeline_baseline import fit_baseline
    from tiny import make_reviews

    texts, labels = zip(*make_reviews(80, seed=5))
    settings = {"analyzer": "auto", "ngram_range": None, "sublinear_tf": True, "min_df": 1,
                "max_features": None, "C": 0.5}

    def coefficients(global_seed, seed):
        np.random.seed(global_seed)
        return fit_baseline(texts, labels, settings, seed)[0][-1].coef_

    np.testing.assert_array_equal(coefficients(0, seed=3), coefficients(1, seed=3))
    assert not np.array_equal(coefficients(0, seed=3), coefficients(0, seed=4))     # the seed is used


def test_the_baseline_settings_shape_the_tfidf_features_and_the_svm(project, tmp_path):
    from distill.data import load_labelled
    from distill.pipeline import run_baseline_stage
    from distill.pipeline_baseline import load_baseline
    from sklearn.feature_extraction.text import CountVectorizer

    def fitted(*sets):
        settings = build_settings(str(project / "pipeline.toml"), {"": {"out": str(tmp_path / "o")}}, sets)
        summary = run_baseline_stage(settings, tmp_path / "o")
        model = load_baseline(tmp_path / "o" / "baseline")
        assert summary["features"] == len(model[0].vocabulary_)
        return model[0], model[-1]

    texts = load_labelled(project / "train.csv").texts
    vectorizer, svm = fitted("baseline.analyzer=char_wb", "baseline.ngram_range=[2, 3]", "baseline.min_df=3",
                             "baseline.sublinear_tf=false", "baseline.C=2")
    vocabulary = vectorizer.vocabulary_
    assert {len(feature) for feature in vocabulary} == {2, 3}       # character 2- and 3-grams, not words
    assert " fi" in vocabulary and "film" not in vocabulary
    every = CountVectorizer(analyzer="char_wb", ngram_range=(2, 3), binary=True).fit(texts)
    df = dict(zip(every.get_feature_names_out(), np.asarray(every.transform(texts).sum(axis=0)).ravel()))
    assert {feature for feature, n in df.items() if n >= 3} == set(vocabulary)   # min_df: in 3 texts at least
    assert min(df.values()) < 3                                      # ... which leaves some out
    text = "film film film plot"                                     # raw counts, not 1 + log(count)
    counts = np.zeros(len(vocabulary))
    for gram in vectorizer.build_analyzer()(text):
        if gram in vocabulary:
            counts[vocabulary[gram]] += 1
    expected = counts * vectorizer.idf_
    np.testing.assert_allclose(vectorizer.transform([text]).toarray()[0], expected / np.linalg.norm(expected),
                               rtol=1e-6)
    assert counts.max() == 3
    assert svm.C == 2.0

    vectorizer, _ = fitted("baseline.max_features=25")
    assert vectorizer.analyzer == "word" and len(vectorizer.vocabulary_) == 25


def test_report_rounds_and_batch_size_set_the_passes_and_batches_of_every_engine(finished, tmp_path, monkeypatch):
    """30 eval texts in batches of 7; one warm-up pass and two timed rounds per engine."""
    import onnxruntime
    from transformers import BertForSequenceClassification

    from distill.pipeline_report import build_report
    from runtime.classifier import Classifier

    out = copy_of(finished, tmp_path)
    batches = {"torch": [], "onnxruntime": [], "numpy": []}
    forward, session_run, run_batch = (BertForSequenceClassification.forward, onnxruntime.InferenceSession.run,
                                       Classifier._run_batch)

    @functools.wraps(forward)       # the same signature: the pipeline checks the model takes token_type_ids
    def spy_forward(self, input_ids=None, **kwargs):
        batches["torch"].append(len(input_ids))
        return forward(self, input_ids=input_ids, **kwargs)

    def spy_session_run(self, names, feeds, *args, **kwargs):
        batches["onnxruntime"].append(len(feeds["input_ids"]))
        return session_run(self, names, feeds, *args, **kwargs)

    def spy_run_batch(self, rows):
        batches["numpy"].append(len(rows))
        return run_batch(self, rows)

    monkeypatch.setattr(BertForSequenceClassification, "forward", spy_forward)
    monkeypatch.setattr(onnxruntime.InferenceSession, "run", spy_session_run)
    monkeypatch.setattr(Classifier, "_run_batch", spy_run_batch)
    settings = build_settings(str(finished[0].parent / "pipeline.toml"), {"": {"out": str(out)}},
                              ["report.rounds=2", "report.batch_size=7", "report.plots=false"], progress=False)
    report = build_report(settings, out, {}, log=lambda m: None)
    passes = 1 + 2
    assert batches == {"torch": [7, 7, 7, 7, 2] * passes * 3,               # teacher twice, the student
                       "onnxruntime": [7, 7, 7, 7, 2] * passes * 2,         # fp32 and int8
                       "numpy": [7, 7, 7, 7, 2] * passes * 2}
    assert report["rounds"] == 2 and report["batch_size"] == 7
    assert all(len(row["samples_per_second_rounds"]) == 2 for row in report["rows"])
