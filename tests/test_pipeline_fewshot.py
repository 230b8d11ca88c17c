"""`distill pipeline` and `distill student` with a few-shot teacher: every stage learns from the
rows the teacher drew (`shots`), and an interrupted few-shot teacher reruns instead of resuming."""
import json
from dataclasses import replace

import pytest

from distill.data import load_labelled
from distill.fewshot import per_class_sample
from distill.pipeline import run_pipeline
from distill.pipeline_config import PipelineConfigError, build_settings
from distill.student import StudentConfig, StudentError, distill_student
from tiny import make_reviews, make_tiny_model, write_csv

CONFIG = """
train = "train.csv"
eval = "dev.csv"
out = "run"

[teach]
model = "base"
few_shot = "prompt"
shots = 3
seed = 5
max_length = 32

[student]
layers = 1
epochs = 1
batch_size = 16
augment_factor = 0
no_cache = true

[export]
max_accuracy_drop = 100.0
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline-fewshot")
    make_tiny_model(root / "base", layers=2)
    write_csv(root / "train.csv", make_reviews(40, seed=1))
    write_csv(root / "dev.csv", make_reviews(20, seed=2))
    (root / "unlabeled.txt").write_text("".join(t + "\n" for t, _ in make_reviews(24, seed=3)), encoding="utf-8")
    (root / "pipeline.toml").write_text(CONFIG, encoding="utf-8")
    return root


def settings_for(project, out, sets=()):
    return build_settings(str(project / "pipeline.toml"), {"": {"out": str(out)}}, sets, progress=False)


def test_every_stage_learns_from_the_teachers_drawn_rows_and_a_failed_teacher_reruns(project, tmp_path):
    out = tmp_path / "run"
    lines = []
    run_pipeline(settings_for(project, out), log=lines.append)
    drawn = per_class_sample(load_labelled(project / "train.csv"), 3, 5)
    teacher = json.loads((out / "teacher" / "training.json").read_text())
    student = json.loads((out / "student" / "training.json").read_text())
    assert teacher["data"]["train_rows_used"] == len(drawn) == 6
    assert student["data"]["rows"]["labelled"] == 6 and student["config"]["shots"] == 3
    baseline = json.loads((out / "baseline" / "baseline.json").read_text())
    assert baseline["train_rows"] == 6                                  # not the file's 40 rows
    assert ("- labelled training rows: few-shot prompt teacher, 3 per class (seed 5); the student and the "
            "baseline learn from the same rows\n") in (out / "report.md").read_text()

    # a teacher stage left failed with a checkpoint (a killed PET run leaves its final
    # classifier's) reruns afresh: a few-shot teacher cannot --resume
    state = json.loads((out / "pipeline.json").read_text())
    state["stages"]["teacher"]["status"] = "failed"
    (out / "pipeline.json").write_text(json.dumps(state))
    checkpoint = out / "teacher.checkpoints" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    lines.clear()
    run_pipeline(settings_for(project, out), log=lines.append)
    teacher_line = next(line for line in lines if "] teacher: running" in line)
    assert "the interrupted run's checkpoints are discarded" in teacher_line, teacher_line
    assert json.loads((out / "pipeline.json").read_text())["stages"]["teacher"]["status"] == "done"


def test_zero_shot_pipeline_needs_unlabelled_texts_and_no_baseline(project, tmp_path):
    zero = ["teach.shots=0"]
    with pytest.raises(PipelineConfigError, match=r"student.shots 0 keeps no labelled row: give student.unlabeled"):
        settings_for(project, tmp_path / "z", zero)                     # build_settings checks every key
    zero.append(f"student.unlabeled={project / 'unlabeled.txt'}")
    with pytest.raises(PipelineConfigError, match=r"teach.shots: 0 \(zero-shot\) leaves the TF-IDF baseline"):
        settings_for(project, tmp_path / "z", zero)
    zero.append("baseline.enabled=false")
    assert settings_for(project, tmp_path / "z", zero).student_settings()["shots"] == 0   # inherited
    assert settings_for(project, tmp_path / "z", zero + ["student.shots=2"]).student_settings()["shots"] == 2


def test_student_shots_keep_the_rows_the_few_shot_teacher_drew(project, tmp_path):
    from distill.teacher import TeachConfig, teach

    teacher = tmp_path / "teacher"
    teach(TeachConfig(train=str(project / "train.csv"), out=str(teacher), model=str(project / "base"),
                      few_shot="prompt", shots=3, seed=5, max_length=32, progress=False))
    base = StudentConfig(teacher=str(teacher), train=str(project / "train.csv"), out=str(tmp_path / "s"),
                         unlabeled=str(project / "unlabeled.txt"), layers=1, epochs=1, batch_size=16,
                         augment_factor=0, seed=5, no_cache=True, progress=False)
    report = distill_student(replace(base, shots=3))
    assert report["data"]["rows"] == {"labelled": 6, "augmented": 0, "unlabeled": 24}
    assert report["data"]["train"]["rows"] == 6 and report["data"]["train"]["file_rows"] == 40
    zero = distill_student(replace(base, shots=0, out=str(tmp_path / "z"), alpha=1.0))
    assert zero["data"]["rows"] == {"labelled": 0, "augmented": 0, "unlabeled": 24}
    assert zero["distillation"]["teacher_logits"]["unlabeled"]["rows"] == 24
    for bad, message in [(dict(shots=0, unlabeled=None), "--shots 0 keeps no labelled row: give --unlabeled"),
                         (dict(shots=0, alpha=0.9), "--alpha: no labelled row to weigh or augment with --shots 0"),
                         (dict(shots=0, augment_factor=1), "--augment-factor: no labelled row"),
                         (dict(shots=-1), "--shots must be at least 0, got -1"),
                         (dict(shots=30), "--shots 30 but label 'negative' has only 20 rows")]:
        with pytest.raises(StudentError, match=message):
            distill_student(replace(base, out=str(tmp_path / "bad"), **bad))
        assert not (tmp_path / "bad").exists()


def test_the_report_names_the_rows_the_teacher_learnt_from():
    from distill.pipeline_report import training_rows

    plain = {"seed": 42, "max_train_samples": None, "few_shot": None, "shots": None}
    assert training_rows(plain) is None                                  # every row of the file
    assert training_rows({**plain, "max_train_samples": 500, "seed": 7}) == "a subset of 500 (seed 7)"
    assert training_rows({**plain, "few_shot": "prompt", "shots": 0}) == "few-shot prompt teacher, none (zero-shot) (seed 42)"
