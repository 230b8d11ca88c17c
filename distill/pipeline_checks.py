"""The pipeline's settings checked before its first stage runs: types are checked as they are
read (pipeline_config), the rest here: ranges, choices, input files, each stage's own checks
(teach, student) and the base model's limits. Errors are PipelineConfigError naming SECTION.KEY.
"""
from __future__ import annotations

import json
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .pipeline_config import PipelineConfigError, PipelineSettings, describe, normal_key, settable_keys

# Limits that `distill teach / student / export onnx` leave to their option types (click IntRange,
# Choice) or meet only once they run: here they fail the pipeline before the first stage.
AT_LEAST = {
    ("teach", "extend_vocab_words"): 0, ("teach", "seed"): 0,
    ("student", "layers"): 1, ("student", "hidden_size"): 1, ("student", "intermediate_size"): 1,
    ("student", "heads"): 1, ("student", "seed"): 0,
    ("export", "max_length"): 2,
    ("export", "max_accuracy_drop"): 0,
    ("baseline", "min_df"): 1, ("baseline", "max_features"): 1,
    ("report", "batch_size"): 1, ("report", "rounds"): 1,
}
METRICS = ("accuracy", "macro_f1", "auc", "loss")      # the choices of --metric
INPUT_FILES = (("data", "label_names"), ("teach", "label_descriptions"), ("teach", "unlabeled"),
               ("student", "unlabeled"))
INPUT_MODELS = (("student", "ensemble"), ("student", "back_translate"))     # lists of model directories
FLAGS_NAMED_OTHERWISE = {"ensemble-teacher": "ensemble"}    # stage flag -> its key


def check_settings(settings: PipelineSettings) -> None:
    """Every stage's settings, before any stage runs (a bad value would otherwise fail its stage
    after the earlier ones trained): PipelineConfigError naming the section.key."""
    values = describe(settings)
    _check_out(settings.out)
    _check_limits(values)
    _check_input_files(values)
    _check_data(settings)
    base_config = _base_model_config(settings)
    _check_max_lengths(values, base_config)
    _check_base_model(settings)
    _check_teach(settings)
    _check_student(settings, base_config)
    _check_export(values["export"])
    if values["baseline"]["enabled"]:
        _check_baseline(values["baseline"])
        if values["teach"]["shots"] == 0:
            raise PipelineConfigError("teach.shots: 0 (zero-shot) leaves the TF-IDF baseline no labelled row "
                                      "to learn from; set baseline.enabled = false (--no-baseline)")


def _check_out(out: str) -> None:
    """OUT (new, or a folder of an earlier run) can be written: a parent that is a file or a
    read-only folder used to fail with a traceback once the first stage began."""
    from .savedir import check_writable_target, probe_writable

    path = Path(out)
    try:
        check_writable_target(path, force=True)
    except (NotADirectoryError, PermissionError) as error:
        raise PipelineConfigError(f"out: {error}") from None
    if path.exists() and not path.is_dir():
        raise PipelineConfigError(f"out: {path} is a file, not a folder")
    if path.is_dir():
        try:
            probe_writable(path)
        except PermissionError as error:
            raise PipelineConfigError(f"out: {error}") from None


def _check_data(settings: PipelineSettings) -> None:
    """The data files parse (a bad row is named by file and line) before OUT is made."""
    from .data import DataError, load_labelled, load_texts, unlabeled_options

    try:
        train = load_labelled(settings.train, settings.data)
        load_labelled(settings.eval, settings.data, labels=train.label_names)
        unlabeled = {settings.teach_settings().get("unlabeled"), settings.student_settings().get("unlabeled")}
        for path in unlabeled - {None}:
            load_texts(path, unlabeled_options(path, settings.data))
    except DataError as error:      # its hints name flags (--text-column): the pipeline's keys are data.*
        raise PipelineConfigError(flags_to_keys(str(error), "data")) from error


def _choices() -> dict:
    from export.quantize import WEIGHT_TYPES

    from .data import FORMATS
    from .vocab_extend import INITS

    return {("data", "format"): FORMATS, ("teach", "metric"): METRICS, ("student", "metric"): METRICS,
            ("teach", "extend_vocab_init"): INITS, ("export", "weight_type"): WEIGHT_TYPES}


def _check_limits(values: dict) -> None:
    for (section, key), minimum in AT_LEAST.items():
        value = values[section][key]
        if value is not None and value < minimum:
            raise PipelineConfigError(f"{section}.{key}: must be at least {minimum}, got {value!r}")
    for (section, key), choices in _choices().items():
        value = values[section][key]
        if value is not None and value not in choices:
            raise PipelineConfigError(f"{section}.{key}: {value!r} is not one of {', '.join(choices)}")


def _check_input_files(values: dict) -> None:
    for section, key in INPUT_FILES:
        path = values[section][key]
        if path is not None and not Path(path).is_file():
            raise PipelineConfigError(f"{section}.{key}: no such file: {path}")
    for section, key in INPUT_MODELS:     # (a missing one failed at the student stage, after the teacher)
        for path in values[section][key] or ():
            if not Path(path).is_dir():
                raise PipelineConfigError(f"{section}.{key}: not a directory (a local model expected): {path}")


@contextmanager
def _stage_errors(section: str, *errors):
    """A stage's own checks, their messages naming pipeline keys (student.alpha), not flags (--alpha)."""
    try:
        yield
    except errors as error:
        raise PipelineConfigError(_pipeline_names(str(error), section)) from error


def _pipeline_names(message: str, section: str) -> str:
    renamed = flags_to_keys(message, section)
    return renamed if renamed != message else f"{section}: {message}"


def flags_to_keys(message: str, section: str) -> str:
    """A stage's message with its flags (--max-accuracy-drop) named as pipeline keys
    (export.max_accuracy_drop); flags without a key are left as they are."""
    keys = set(settable_keys(section))

    def key_of(match) -> str:
        key = normal_key(FLAGS_NAMED_OTHERWISE.get(match.group(1), match.group(1)))
        return f"{section}.{key}" if key in keys else match.group(0)

    return re.sub(r"--([a-z][a-z0-9-]*)", key_of, message)


def _check_teach(settings: PipelineSettings) -> None:
    from .teacher import TeachError, check_teach_config

    config = settings.teach_config(Path(settings.out) / "teacher", resume=False)
    with _stage_errors("teach", TeachError):
        if config.few_shot:
            from .fewshot import check_few_shot
            check_few_shot(config)
        else:
            check_teach_config(config)


def _check_student(settings: PipelineSettings, base_config: dict) -> None:
    """`base_config`: the base model's config.json ({} when unknown), whose layer count and
    widths the teacher keeps."""
    from .student_config import StudentError, check_config
    from .student_model import check_heads_divide, resolve_layer_map

    with tempfile.TemporaryDirectory() as stand_in:
        # check_config also looks for the teacher's config.json; the teacher stage writes it later
        (Path(stand_in) / "config.json").write_text("{}", encoding="utf-8")
        config = settings.student_config(Path(stand_in), Path(settings.out) / "student", resume=False)
        with _stage_errors("student", StudentError):
            check_config(config)
            layers = base_config.get("num_hidden_layers")
            if isinstance(layers, int):
                resolve_layer_map(config, layers)
            hidden = config.hidden_size or base_config.get("hidden_size")
            heads = config.heads or base_config.get("num_attention_heads")
            if isinstance(hidden, int) and isinstance(heads, int) and heads > 0:
                check_heads_divide(hidden, heads)


def _base_model_config(settings: PipelineSettings) -> dict:
    """config.json of the teacher's base model, whose layers and positions the teacher keeps;
    {} when the base model is not a local directory."""
    from .teacher import default_teacher_path

    config = Path(settings.teach_settings()["model"] or default_teacher_path()) / "config.json"
    try:
        return json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _check_base_model(settings: PipelineSettings) -> None:
    """The teacher's base model can become an edge bundle (model_checks): a DistilBERT or RoBERTa
    checkpoint, or a vocabulary without [SEP], would otherwise fail at export or mid-training."""
    from .model_checks import check_checkpoint
    from .teacher import default_teacher_path, model_config

    source = settings.teach_settings()["model"] or default_teacher_path()
    if not (Path(source) / "config.json").is_file():
        return                      # not a local directory: teach.model's own check names it

    def error(message: str) -> PipelineConfigError:
        return PipelineConfigError(f"teach.model: {message}")

    check_checkpoint(source, model_config(source, error), error)


def _check_max_lengths(values: dict, base_config: dict) -> None:
    """Every model of the pipeline reads at most the base model's positions."""
    positions = base_config.get("max_position_embeddings")
    for section in ("teach", "student", "export"):
        length = values[section]["max_length"]
        if isinstance(positions, int) and length is not None and length > positions:
            raise PipelineConfigError(f"{section}.max_length: the base model reads at most {positions} "
                                      f"tokens (max_position_embeddings), got {length}")


def _check_export(values: dict) -> None:
    from export.onnx_export import opset_problem

    problem = opset_problem(values["opset"])
    if problem:
        raise PipelineConfigError(f"export.opset: {problem}, got {values['opset']}")


def _check_baseline(values: dict) -> None:
    from .pipeline_baseline import vectorizer_settings

    try:
        vectorizer_settings((), values)       # refuses an unknown analyzer
    except ValueError as error:
        raise PipelineConfigError(str(error)) from error
    low, high = values["ngram_range"] or (1, 1)
    if not 1 <= low <= high:
        raise PipelineConfigError(f"baseline.ngram_range: expected [low, high] with 1 <= low <= high, "
                                  f"got {list(values['ngram_range'])}")
    if values["C"] <= 0:
        raise PipelineConfigError(f"baseline.C: must be > 0, got {values['C']!r}")
