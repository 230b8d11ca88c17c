"""The student model: the teacher's config with fewer (or narrower) layers, its weights copied
from chosen teacher layers or drawn at random."""
from __future__ import annotations

import re

from .student_config import StudentConfig, StudentError


def even_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Student layer i <- teacher layer floor(i * L / N): 3 of 6 -> [0, 2, 4], 2 of 6 -> [0, 3]."""
    if not 1 <= student_layers <= teacher_layers:
        raise StudentError(f"--layers must be between 1 and the teacher's {teacher_layers}, got {student_layers}")
    return [i * teacher_layers // student_layers for i in range(student_layers)]


def resolve_layer_map(config: StudentConfig, teacher_layers: int, note: str = "") -> list[int]:
    """The teacher layer of each student layer, among teacher_layers encoder layers (note: why
    the teacher has no more, for the errors)."""
    if config.layer_map:
        layer_map = [int(i) for i in config.layer_map]
        if config.layers is not None and config.layers != len(layer_map):
            raise StudentError(f"--layers {config.layers} but --layer-map names {len(layer_map)} layers")
        bad = [i for i in layer_map if not 0 <= i < teacher_layers]
        if bad:
            raise StudentError(f"--layer-map: teacher has layers 0..{teacher_layers - 1}, not {bad}{note}")
        return layer_map
    try:
        return even_layer_map(teacher_layers, config.layers or max(1, teacher_layers // 2))
    except StudentError as error:
        raise StudentError(f"{error}{note}") from None


def encoder_layers(teacher_config) -> tuple[int, str]:
    """(the teacher's encoder layers a student may copy, a note for errors): a few-shot teacher's
    last layer is its hand-set mean-pooling head (weights near 1e9), not an encoder layer."""
    if few_shot_head(teacher_config):
        return teacher_config.num_hidden_layers - 1, (
            f" (layer {teacher_config.num_hidden_layers - 1} of this few-shot teacher is its mean-pooling "
            f"head, not an encoder layer)")
    return teacher_config.num_hidden_layers, ""


_LAYER_KEY = re.compile(r"((?:^|\.)layer\.)(\d+)(\.)")


def teacher_key(student_key: str, layer_map: list[int]) -> str:
    """'bert.encoder.layer.1.attention...' -> 'bert.encoder.layer.2.attention...' for map [0, 2, 4]."""
    return _LAYER_KEY.sub(lambda m: f"{m.group(1)}{layer_map[int(m.group(2))]}{m.group(3)}", student_key, count=1)


HEAD_REINIT_REASON = (
    "the teacher's pooler and classifier are a hand-set mean-pooling cosine head (config.json "
    "few_shot_head, distill/fewshot_head.py): their extreme weights only reproduce the scores on top "
    "of the teacher's own pooling layer, and copied into a layer-subset student they blow the logits up")


def few_shot_head(model_config) -> str | None:
    """The teacher's few_shot_head mark (distill/fewshot_head.py), None for a plain teacher."""
    from .fewshot_head import HEAD_MARK

    mark = getattr(model_config, "few_shot_head", None)
    if mark not in (None, HEAD_MARK):
        raise StudentError(f"--teacher: config.json few_shot_head {mark!r} is not a head this version "
                           f"knows ({HEAD_MARK!r})")
    return mark


def head_init(teacher_config, init: str) -> dict:
    """How the student's pooler and classifier start, for training.json."""
    if init == "random":
        return {"pooler_classifier": "random"}
    mark = few_shot_head(teacher_config)
    if mark:
        return {"pooler_classifier": "reinitialised", "std": teacher_config.initializer_range, "bias": 0.0,
                "teacher_few_shot_head": mark, "reason": HEAD_REINIT_REASON}
    return {"pooler_classifier": "copied"}


def reinitialise_head(student) -> None:
    """Pooler and classifier weights ~ normal(0, initializer_range), biases 0 (BERT's own init)."""
    import torch

    with torch.no_grad():
        for layer in (student.bert.pooler.dense, student.classifier):
            layer.weight.normal_(0.0, student.config.initializer_range)
            layer.bias.zero_()


def student_model_config(teacher_config, config: StudentConfig):
    """(student's model config, layer map, init): the teacher's config with fewer layers (and,
    when asked, narrower), without few_shot_head. Builds nothing, so that a shape that cannot
    work is refused before the teacher scores anything."""
    import copy

    student_config = copy.deepcopy(teacher_config)
    if few_shot_head(teacher_config):
        delattr(student_config, "few_shot_head")
    layer_map = resolve_layer_map(config, *encoder_layers(teacher_config))
    student_config.num_hidden_layers = len(layer_map)
    narrower = {"hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size,
                "num_attention_heads": config.heads}
    changed = {k: v for k, v in narrower.items() if v is not None and v != getattr(teacher_config, k)}
    init = config.init or ("random" if changed else "teacher")
    if changed and init == "teacher":
        raise StudentError(f"--init teacher copies weights, so it needs the teacher's widths; "
                           f"{', '.join(changed)} differ: use --init random")
    for name, value in changed.items():
        setattr(student_config, name, value)
    check_heads_divide(student_config.hidden_size, student_config.num_attention_heads)
    return student_config, layer_map, init


def check_heads_divide(hidden_size: int, heads: int) -> None:
    """Attention splits the hidden size evenly among the heads."""
    if hidden_size % heads:
        raise StudentError(f"--hidden-size {hidden_size} is not a multiple of --heads {heads}")


def build_student(teacher, config: StudentConfig):
    """(student model, layer map, init), shaped by student_model_config; with init 'teacher'
    every weight is copied: the chosen layers, embeddings, pooler and classifier, except that a
    few-shot teacher's hand-set pooler and classifier (config few_shot_head) are re-initialised.
    The student is a plain BertForSequenceClassification."""
    import torch
    from transformers import AutoModelForSequenceClassification

    student_config, layer_map, init = student_model_config(teacher.config, config)
    torch.manual_seed(config.seed)
    student = AutoModelForSequenceClassification.from_config(student_config)
    if init == "teacher":
        source = teacher.state_dict()
        state = {key: source[teacher_key(key, layer_map)].clone() for key in student.state_dict()}
        student.load_state_dict(state)
        if few_shot_head(teacher.config):
            reinitialise_head(student)
    return student, layer_map, init
