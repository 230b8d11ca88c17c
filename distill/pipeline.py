"""`distill pipeline`: labelled file -> teacher -> student -> fp32 and int8 bundles -> report card.

Stages, each writing one output under OUT:

    teacher      OUT/teacher/        distill teach
    student      OUT/student/        distill student (teacher: OUT/teacher)
    export_fp32  OUT/student-fp32/   distill export onnx (validated on the eval file)
    export_int8  OUT/student-int8/   distill export onnx --int8 (accuracy gate on the eval file)
    baseline     OUT/baseline/       TF-IDF + linear SVM on the teacher's training rows
    report       OUT/report.md, OUT/report.json, OUT/plots/*.png

A stage runs only when its fingerprint (its resolved settings, less those that cannot change its
output, the SHA-256 of every input file and model it reads and the digests of the outputs it
reads) differs from that of its last finished run, or its output is missing or was changed
(OUT/pipeline.json, see pipeline_state). An interrupted training stage resumes from its last
epoch checkpoint; rerun with other settings, it starts afresh and its checkpoints are discarded.
Settings: pipeline_config (TOML file, flags, --set), all checked before the first stage runs.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from .config_checks import RESUMABLE_CHANGES
from .options import data_options

STAGES = ("teacher", "student", "export_fp32", "export_int8", "baseline", "report")
OUTPUTS = {"teacher": "teacher", "student": "student", "export_fp32": "student-fp32",
           "export_int8": "student-int8", "baseline": "baseline", "report": "report.json"}
# the settings section of each stage (its errors name that section's keys)
STAGE_SECTIONS = {"teacher": "teach", "student": "student", "export_fp32": "export", "export_int8": "export",
                  "baseline": "baseline", "report": "report"}


class PipelineError(Exception):
    """A stage failed; the message names it."""


def _log(message: str) -> None:
    """Stage lines and the table go to stdout, as teach's and student's summaries do, so that
    `distill pipeline ... > run.log` keeps them (progress bars and errors stay on stderr)."""
    click.echo(message)


# ---------------------------------------------------------------- fingerprints

# teach / student settings that cannot change a stage's output: those a --resume may change, less
# epochs, eval and teacher_batch_size, which change the model (the last by about 1e-8 through the
# teacher's padding: a rerun with it changed retrains, so that a skip means the same weights)
OUTPUT_NEUTRAL = RESUMABLE_CHANGES - {"epochs", "eval", "teacher_batch_size"}
# settings naming files or models whose contents input_files() hashes: the same bytes under
# another spelling of the path (absolute, relative) are the same input
CONTENT_HASHED = frozenset({"model", "label_descriptions", "unlabeled", "ensemble", "back_translate"})


def decisive(values: dict) -> dict:
    """A training stage's settings less those that cannot change its output."""
    return {k: v for k, v in values.items() if k not in OUTPUT_NEUTRAL | CONTENT_HASHED}


def stage_inputs(stage: str, settings, files: dict, digests: dict) -> dict:
    """Everything that decides a stage's output (hashed into its fingerprint)."""
    from dataclasses import asdict

    data = asdict(settings.data)
    if data.pop("label_names"):
        data["label_names_sha256"] = files["label_names"]
    if stage == "teacher":
        return {"settings": decisive(settings.teach_settings()), "data": data, "train": files["train"],
                "eval": files["eval"], "model": files["model"],
                **_given(files, "label_descriptions", "teach_unlabeled")}
    if stage == "student":
        return {"settings": decisive(settings.student_settings()), "data": data, "train": files["train"],
                "eval": files["eval"], "teacher": digests["teacher"], "unlabeled": files.get("unlabeled"),
                **_given(files, "ensemble", "back_translate")}
    if stage in ("export_fp32", "export_int8"):
        return {"settings": settings.export_settings(int8=stage == "export_int8"), "data": data,
                "eval": files["eval"], "student": digests["student"]}
    if stage == "baseline":
        teach = settings.teach_settings()
        return {"settings": settings.baseline_settings(), "data": data, "train": files["train"],
                "eval": files["eval"], "rows": {"max_train_samples": teach["max_train_samples"], "seed": teach["seed"],
                                                **({"shots": teach["shots"]} if teach["shots"] is not None else {})}}
    return {"settings": settings.report_settings(), "data": data, "eval": files["eval"],
            "artifacts": {name: digests.get(name) for name in STAGES[:-1]}}


def _given(files: dict, *names: str) -> dict:
    """The named entries of input_files() that are set: an unset one adds no key, so the
    fingerprints of runs that do not use it stay what they were."""
    return {name: files[name] for name in names if files.get(name) is not None}


def model_input(source) -> dict | str:
    """A model a stage reads: a local directory by the SHA-256 of its weights, config and tokenizer
    (not its path), a hub id by its name."""
    from .cache import weights_sha256

    try:
        return {"weights": weights_sha256(source)} if Path(source).is_dir() else str(source)
    except FileNotFoundError:
        return str(source)


def file_input(path) -> str | None:
    """SHA-256 of a file a stage reads; None when the setting is not used."""
    from .data import file_sha256

    return file_sha256(path) if path else None


def input_files(settings) -> dict:
    """The contents of every file and model directory a stage reads: the data files, the label
    names, the base teacher, the few-shot descriptions and texts, the unlabelled texts, the
    ensemble teachers and the back-translation models (not student.cache_dir: its entries are
    keyed by what they were computed from)."""
    from .teacher import default_teacher_path

    teach, student = settings.teach_settings(), settings.student_settings()
    back_translate = student.get("back_translate")
    return {"train": file_input(settings.train), "eval": file_input(settings.eval),
            "label_names": file_input(settings.data.label_names),
            "model": model_input(teach["model"] or default_teacher_path()),
            "label_descriptions": file_input(teach.get("label_descriptions")),
            "teach_unlabeled": file_input(teach.get("unlabeled")),
            "unlabeled": file_input(student.get("unlabeled")),
            "ensemble": [model_input(d) for d in student.get("ensemble") or ()] or None,
            "back_translate": [model_input(m) for m in back_translate] if back_translate else None}


# ---------------------------------------------------------------- stage runners

def run_teacher(settings, out: Path, resume: bool, callbacks) -> dict:
    from .teacher import teach

    report = teach(settings.teach_config(out / "teacher", resume), callbacks=callbacks)
    final = report.get("final_eval") or {}
    return {"accuracy": final.get("accuracy"), "parameters": report.get("parameters"),
            "resumed_from": report.get("resumed_from")}


def run_student(settings, out: Path, resume: bool, callbacks) -> dict:
    from .student import distill_student

    report = distill_student(settings.student_config(out / "teacher", out / "student", resume), callbacks=callbacks)
    final = report.get("final_eval") or {}
    return {"accuracy": final.get("accuracy"), "parameters": report.get("parameters"),
            "retention": report.get("comparison", {}).get("retention"), "resumed_from": report.get("resumed_from")}


def run_export(settings, out: Path, int8: bool) -> dict:
    """The fp32 stage reports its logits' deviation from torch, the int8 stage its deviation
    from the fp32 graph (export.json's parity section has both)."""
    from export import ExportError
    from export.cli import ExportSettings, export_bundle

    values = settings.export_settings(int8=int8)
    export = ExportSettings(model_dir=str(out / "student"), out=str(out / OUTPUTS["export_int8" if int8 else "export_fp32"]),
                            int8=int8, eval_path=settings.eval, data_options=settings.data, force=True, **values)
    try:
        report = export_bundle(export, log=lambda m: _log(f"  {m}"))
    except ExportError as error:
        raise ExportError(export_failure(error)) from error
    accuracy = (report.get("accuracy") or {}).get("onnx_int8" if int8 else "onnx_fp32") or {}
    parity = report["parity"]
    deviation = ({"max_abs_logit_diff_vs_fp32": parity["int8_max_abs_logit_diff_vs_fp32"]} if int8
                 else {"max_abs_logit_diff_vs_torch": parity["max_abs_logit_diff"]})
    size = report["sizes"]["int8_bytes" if int8 else "fp32_bytes"]
    return {"accuracy": accuracy.get("accuracy"), "bytes": size, **deviation}


def export_failure(error) -> str:
    """An export's error, with a tripped accuracy gate told how to pass it (run_pipeline names
    the flags as export.KEY settings)."""
    message = str(error)
    accuracy = (getattr(error, "report", None) or {}).get("accuracy") or {}
    drop, limit = accuracy.get("int8_accuracy_drop_points"), accuracy.get("max_accuracy_drop_points")
    if drop is not None and limit is not None and drop > limit:
        message += "; to accept the drop, raise export.max_accuracy_drop (--set export.max_accuracy_drop=N)"
    return message


def run_baseline_stage(settings, out: Path) -> dict:
    from .data import load_labelled, subsample
    from .evaluation import model_labels
    from .fewshot import per_class_sample
    from .pipeline_baseline import run_baseline

    teach = settings.teach_settings()
    labels = model_labels(out / "teacher") if (out / "teacher").is_dir() else None
    train = load_labelled(settings.train, settings.data, labels=labels)
    train = per_class_sample(subsample(train, teach["max_train_samples"], teach["seed"]), teach["shots"], teach["seed"])
    dev = load_labelled(settings.eval, settings.data, labels=train.label_names)
    report = run_baseline(train, dev, settings.baseline_settings(), out / "baseline", teach["seed"])
    return {"accuracy": report["final_eval"]["accuracy"], "features": report["features"]}


# ---------------------------------------------------------------- the run

def active_stages(settings) -> list[str]:
    return [s for s in STAGES if s != "baseline" or settings.baseline_settings()["enabled"]]


def checkpoint_exists(out: Path, stage: str) -> bool:
    from .teacher import checkpoint_dir_for
    from .training import last_checkpoint

    return stage in ("teacher", "student") and last_checkpoint(checkpoint_dir_for(out / stage)) is not None


def resumable(stage: str, settings) -> bool:
    """A few-shot teacher cannot --resume (PET's final classifier leaves checkpoints when killed;
    the stage reruns whole instead)."""
    return not (stage == "teacher" and settings.teach.get("few_shot"))


def checkpoint_note(checkpoints: bool, resume: bool) -> str:
    """The progress line's word on an interrupted run's checkpoints: resumed, or deleted by the
    fresh start (an edited setting or --force)."""
    if not checkpoints:
        return ""
    return ", resuming from its last checkpoint" if resume else "; the interrupted run's checkpoints are discarded"


def run_pipeline(settings, log=_log, callbacks: dict | None = None) -> dict:
    """Run (or skip) every stage, holding OUT's lock (a second pipeline on the same OUT stops
    with PipelineError); returns report.json's dict. callbacks: {stage: [TrainerCallback]} for
    the two training stages."""
    from .savedir import OutputLockedError, output_lock

    try:
        with output_lock(settings.out):
            return _run_pipeline(settings, log, callbacks)
    except OutputLockedError as error:
        raise PipelineError(str(error)) from None


def _run_pipeline(settings, log=_log, callbacks: dict | None = None) -> dict:
    from .pipeline_report import build_report, eval_skipped, format_table
    from .pipeline_state import PipelineState, fingerprint, path_digest

    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    state = PipelineState(out)
    files = input_files(settings)
    stages = active_stages(settings)
    digests, summary, report = {}, {}, None
    for number, stage in enumerate(stages, 1):
        inputs = stage_inputs(stage, settings, files, digests)
        stage_fingerprint = fingerprint(inputs)
        output = out / OUTPUTS[stage]
        tag = f"[{number}/{len(stages)}] {stage}"
        if not settings.force and state.is_current(stage, stage_fingerprint, output):
            record = state.last_done(stage)
            digests[stage] = record["digest"]
            summary[stage] = {"status": "skipped", "seconds": record.get("seconds"), "summary": record.get("summary")}
            log(f"{tag}: unchanged, skipped ({output})")
            continue
        record = state.get(stage)
        checkpoints = checkpoint_exists(out, stage)
        resume = bool(record and record.get("status") in ("running", "failed")
                      and record.get("fingerprint") == stage_fingerprint
                      and not settings.force and checkpoints and resumable(stage, settings))
        reason = "--force" if settings.force else state.why_run(stage, stage_fingerprint, inputs, output)
        log(f"{tag}: running ({reason}{checkpoint_note(checkpoints, resume)}) -> {output}")
        state.start(stage, stage_fingerprint, inputs)
        started = time.time()
        try:
            if stage == "teacher":
                result = run_teacher(settings, out, resume, (callbacks or {}).get("teacher", ()))
            elif stage == "student":
                result = run_student(settings, out, resume, (callbacks or {}).get("student", ()))
            elif stage.startswith("export"):
                result = run_export(settings, out, int8=stage == "export_int8")
            elif stage == "baseline":
                result = run_baseline_stage(settings, out)
            else:
                summary[stage] = {"status": "ran", "seconds": None}
                report = build_report(settings, out, summary, log)
                result = {"rows": len(report["rows"])}
        except Exception as error:
            message = stage_message(stage, error)
            if not isinstance(error, user_errors()):     # a bug or a library's failure: say which
                message = f"{type(error).__name__}: {message}"
            state.fail(stage, message, time.time() - started)
            raise PipelineError(f"stage {stage} failed: {message}") from error
        seconds = time.time() - started
        digests[stage] = path_digest(output)
        state.finish(stage, digests[stage], seconds, result)
        summary[stage] = {"status": "ran", "seconds": round(seconds, 2), "summary": result}
        details = ", ".join(f"{k} {format_value(k, v)}" for k, v in result.items() if v is not None)
        log(f"{tag}: done in {seconds:.0f} s" + (f" ({details})" if details else ""))
    if report is None:
        import json
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    log("")
    log(format_table(report))
    skipped = eval_skipped(report)
    if skipped:
        log(f"eval {report['eval']['path']}: {skipped}")
    written = f"; plots: {out / 'plots'}" if report.get("plots") else ""
    log(f"\nreport: {out / 'report.md'}, {out / 'report.json'}{written}")
    return report


def user_errors() -> tuple[type, ...]:
    """The errors the stages raise for a setting, a file or a model that cannot work: their
    message is the whole story, so the class name (StudentError, ...) is left out."""
    from export import ExportError

    from .evaluation import EvalError
    from .predict import ModelDirError
    from .records import DataError
    from .savedir import OutputExistsError
    from .student_config import StudentError
    from .teacher import TeachError

    return ExportError, EvalError, ModelDirError, DataError, OutputExistsError, StudentError, TeachError


def stage_message(stage: str, error: Exception) -> str:
    """A stage's error with the flags it names (--trim-max-tokens) as pipeline keys
    (student.trim_max_tokens): the pipeline's settings are keys, not flags."""
    from .pipeline_checks import flags_to_keys

    section = STAGE_SECTIONS.get(stage)
    return flags_to_keys(str(error), section) if section else str(error)


def format_value(key: str, value) -> str:
    """A stage result for the progress line: logit deviations (1e-8 .. 1e-2) in scientific
    notation, so that a small one does not print as 0.0000."""
    if not isinstance(value, float):
        return str(value)
    return f"{value:.2e}" if "logit_diff" in key else f"{value:.4f}"


# ---------------------------------------------------------------- the command

FLAG_KEYS = {  # flag -> the keys it sets
    "model": [("teach", "model")],
    "teacher_epochs": [("teach", "epochs")],
    "student_epochs": [("student", "epochs")],
    "layers": [("student", "layers")],
    "max_train_samples": [("teach", "max_train_samples")],
    "max_length": [("teach", "max_length")],
    "seed": [("teach", "seed")],
    "extend_vocab": [("teach", "extend_vocab")],
    "unlabeled": [("student", "unlabeled")],
}
DATA_FLAGS = {"data_format": "format", "text_column": "text_column", "label_column": "label_column",
              "label_names": "label_names", "skip_bad_rows": "skip_bad_rows"}


def flags_from(ctx, kwargs: dict) -> dict:
    """{section: {key: value}} for the flags given on the command line (not their defaults)."""
    from click.core import ParameterSource

    given = {name for name in kwargs if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    flags: dict = {"": {k: kwargs[k] for k in ("train", "eval", "out") if k in given and kwargs[k]}}
    for name, targets in FLAG_KEYS.items():
        if name in given:
            for section, key in targets:
                flags.setdefault(section, {})[key] = kwargs[name]
    for name, key in DATA_FLAGS.items():
        if name in given:
            flags.setdefault("data", {})[key] = kwargs[name]
    if "no_baseline" in given:
        flags.setdefault("baseline", {})["enabled"] = False
    return flags


@click.command("pipeline", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--train", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Labelled training file (or `train` in --config).")
@click.option("--eval", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Labelled evaluation file: every artifact is scored on it (or `eval` in --config).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output directory for every stage and the report (or `out` in --config).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="TOML file with [data] [teach] [student] [export] [baseline] [report] tables "
                   "(see examples/pipeline.toml); flags override it.")
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a setting, e.g. --set student.temperature=4 (repeatable; applied last; "
                   "not the keys the pipeline sets itself: train, eval, out, resume, force, progress, "
                   "keep_checkpoints, teacher). "
                   "VALUE default (the bare word) restores the built-in default, e.g. "
                   "--set student.early_stopping=default; the string itself is 'KEY=\"default\"'.")
@click.option("--model", default=None, metavar="NAME_OR_PATH", help="Base checkpoint of the teacher (teach.model).")
@click.option("--teacher-epochs", type=float, default=None,
              help="Teacher training epochs (teach.epochs; default: distill teach's).")
@click.option("--student-epochs", type=float, default=None,
              help="Student training epochs (student.epochs; default: distill student's).")
@click.option("--layers", type=int, default=None,
              help="Student layers taken from the teacher (student.layers; default: half the teacher's).")
@click.option("--max-train-samples", type=int, default=None,
              help="teach.max_train_samples (the student and the baseline use the same rows).")
@click.option("--max-length", type=int, default=None, help="teach.max_length (the student inherits it).")
@click.option("--seed", type=int, default=None, help="teach.seed (the student inherits it).")
@click.option("--extend-vocab", is_flag=True, default=False, help="teach.extend_vocab = true.")
@click.option("--unlabeled", type=click.Path(exists=True, dir_okay=False), default=None,
              help="student.unlabeled: raw texts the teacher labels (transfer data).")
@click.option("--no-baseline", is_flag=True, default=False, help="Skip the TF-IDF + linear SVM row.")
@click.option("--force", is_flag=True, default=False, help="Rerun every stage, even unchanged ones.")
@click.option("--quiet", is_flag=True, default=False,
              help="No progress bars and no transformers log lines; the stage lines and the table stay.")
@data_options
@click.pass_context
def pipeline_command(ctx, config_file, assignments, force, quiet, **kwargs):
    """Labelled file -> teacher -> student -> fp32 and int8 ONNX bundles -> report card.

    Runs teach, student, export (fp32 and int8) and the TF-IDF + linear SVM baseline, then scores
    every artifact on --eval through the engine it runs on (torch, onnxruntime, the numpy runtime),
    one thread, side by side: OUT/report.md, OUT/report.json and OUT/plots/*.png. A stage whose
    settings and inputs did not change since its last successful run is skipped, so running the
    same command again continues after an interruption. Settings: defaults < --config < flags.
    """
    from .pipeline_config import PipelineConfigError, build_settings

    if quiet:
        from .predict import silence_transformers

        silence_transformers()
    try:
        settings = build_settings(config_file, flags_from(ctx, kwargs), assignments, force=force, progress=not quiet)
        run_pipeline(settings)
    except (PipelineConfigError, PipelineError) as error:
        raise click.ClickException(str(error)) from error


if __name__ == "__main__":
    sys.exit(pipeline_command())
