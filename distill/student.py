"""`distill student`: a smaller BERT trained on the teacher's soft outputs.

Flow: read the data with the teacher's label order -> build transfer texts (augmentation,
unlabelled file) -> teacher logits for every training text, once, through the cache (with
--ensemble-teacher, every teacher's, averaged) -> build the
student (teacher layers or random init, optional trimmed vocabulary) -> DistillationTrainer ->
teacher and student side by side on the eval set -> atomic save with training.json.
"""
from __future__ import annotations

import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .augment import OPS, AugmentOptions
from .data import DataOptions, LabelledData

TEACHER_DIR_HELP = "a model directory written by `distill teach`"


@dataclass
class StudentConfig:
    """Every `distill student` setting; the CLI takes its defaults from here, training.json records it."""
    teacher: str = ""
    ensemble: tuple[str, ...] = ()      # more teachers whose logits are averaged with the teacher's
    train: str = ""
    out: str = ""
    eval: str | None = None
    # the student
    layers: int | None = None            # None: half the teacher's layers (3 of 6)
    layer_map: tuple[int, ...] | None = None  # teacher layer per student layer; None: evenly spread
    hidden_size: int | None = None       # narrower student (random init) when set
    intermediate_size: int | None = None
    heads: int | None = None
    init: str | None = None              # teacher | random; None: teacher unless narrower
    trim_vocab: bool = False
    trim_min_count: int = 1              # with trim_vocab: keep a multi-character token seen this often
    # the loss
    temperature: float = 2.0
    alpha: float = 0.5                   # weight of the KD term; 1 - alpha weights cross-entropy
    kd_loss: str = "kl"                  # kl | mse
    # transfer data, labelled by the teacher
    augment_factor: int = 2              # new texts per training text (0: none)
    augment_ops: tuple[str, ...] = OPS
    augment_rate: float = 0.1
    synonym_neighbours: int = 5
    unlabeled: str | None = None
    max_unlabeled: int | None = None
    back_translate: tuple[str, str] | None = None
    cache_dir: str | None = None         # None: ~/.cache/distill-edge (or $DISTILL_CACHE_DIR)
    no_cache: bool = False
    teacher_batch_size: int = 128
    # training (the options shared with teach)
    epochs: float = 3.0
    lr: float = 1e-4
    batch_size: int = 32
    eval_batch_size: int = 128
    max_length: int | None = None        # None: the teacher's training max_length
    weight_decay: float = 0.01
    warmup: float = 0.1
    early_stopping: int | None = None
    metric: str = "accuracy"
    seed: int = 42
    max_train_samples: int | None = None
    logging_steps: int = 50
    resume: bool = False
    force: bool = False
    keep_checkpoints: bool = False
    progress: bool = True
    data: DataOptions = DataOptions()

    def augment_options(self) -> AugmentOptions:
        return AugmentOptions(factor=self.augment_factor, ops=tuple(self.augment_ops), rate=self.augment_rate,
                              neighbours=self.synonym_neighbours, seed=self.seed,
                              back_translate=tuple(self.back_translate) if self.back_translate else None)


class StudentError(Exception):
    """A setting that cannot work, reported before any training."""


def _check(config: StudentConfig) -> None:
    if not (Path(config.teacher) / "config.json").is_file():
        raise StudentError(f"--teacher {config.teacher}: not {TEACHER_DIR_HELP} (no config.json)")
    for other in config.ensemble:
        if not (Path(other) / "config.json").is_file():
            raise StudentError(f"--ensemble-teacher {other}: not {TEACHER_DIR_HELP} (no config.json)")
    if config.early_stopping is not None and not config.eval:
        raise StudentError("--early-stopping needs --eval")
    if config.temperature <= 0 or not 0 <= config.alpha <= 1:
        raise StudentError("--temperature must be > 0 and --alpha in [0, 1]")
    if config.kd_loss not in ("kl", "mse") or config.init not in (None, "teacher", "random"):
        raise StudentError("--kd-loss must be kl or mse, --init teacher or random")
    if config.epochs <= 0 or config.lr <= 0 or config.batch_size <= 0:
        raise StudentError("--epochs, --lr and --batch-size must be positive")
    if config.max_length is not None and config.max_length < 2:
        raise StudentError("--max-length must be at least 2")
    if config.trim_min_count < 1 or (config.trim_min_count > 1 and not config.trim_vocab):
        raise StudentError("--trim-min-count must be at least 1, and more than 1 only with --trim-vocab")
    try:
        config.augment_options()
    except ValueError as error:
        raise StudentError(f"augmentation: {error}") from error


# ---------------------------------------------------------------- building the student

def even_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Student layer i <- teacher layer floor(i * L / N): 3 of 6 -> [0, 2, 4], 2 of 6 -> [0, 3]."""
    if not 1 <= student_layers <= teacher_layers:
        raise StudentError(f"--layers must be between 1 and the teacher's {teacher_layers}")
    return [i * teacher_layers // student_layers for i in range(student_layers)]


def resolve_layer_map(config: StudentConfig, teacher_layers: int) -> list[int]:
    if config.layer_map:
        layer_map = [int(i) for i in config.layer_map]
        if config.layers is not None and config.layers != len(layer_map):
            raise StudentError(f"--layers {config.layers} but --layer-map names {len(layer_map)} layers")
        bad = [i for i in layer_map if not 0 <= i < teacher_layers]
        if bad:
            raise StudentError(f"--layer-map: teacher has layers 0..{teacher_layers - 1}, not {bad}")
        return layer_map
    return even_layer_map(teacher_layers, config.layers or max(1, teacher_layers // 2))


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


def build_student(teacher, config: StudentConfig):
    """(student model, layer map, init). The teacher's config with fewer layers (and, when
    asked, narrower); with init 'teacher' every weight is copied: the chosen layers, embeddings,
    pooler and classifier, except that a few-shot teacher's hand-set pooler and classifier
    (config few_shot_head) are re-initialised. The student's config never carries few_shot_head:
    it is a plain BertForSequenceClassification."""
    import copy

    import torch
    from transformers import AutoModelForSequenceClassification

    special_head = few_shot_head(teacher.config)
    student_config = copy.deepcopy(teacher.config)
    if special_head:
        delattr(student_config, "few_shot_head")
    layer_map = resolve_layer_map(config, teacher.config.num_hidden_layers)
    student_config.num_hidden_layers = len(layer_map)
    narrower = {"hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size,
                "num_attention_heads": config.heads}
    changed = {k: v for k, v in narrower.items() if v is not None and v != getattr(teacher.config, k)}
    init = config.init or ("random" if changed else "teacher")
    if changed and init == "teacher":
        raise StudentError(f"--init teacher copies weights, so it needs the teacher's widths; "
                           f"{', '.join(changed)} differ: use --init random")
    for name, value in changed.items():
        setattr(student_config, name, value)
    if student_config.hidden_size % student_config.num_attention_heads:
        raise StudentError(f"--hidden-size {student_config.hidden_size} is not a multiple of "
                           f"--heads {student_config.num_attention_heads}")
    torch.manual_seed(config.seed)
    student = AutoModelForSequenceClassification.from_config(student_config)
    if init == "teacher":
        source = teacher.state_dict()
        state = {key: source[teacher_key(key, layer_map)].clone() for key in student.state_dict()}
        student.load_state_dict(state)
        if special_head:
            reinitialise_head(student)
    return student, layer_map, init


# ---------------------------------------------------------------- teacher logits, once

def score_with_teacher(teacher, tokenizer, texts, max_length: int, batch_size: int, progress: bool):
    """The only place the teacher scores training texts: one no-grad pass, length-sorted batches."""
    from .predict import predict_logits

    return predict_logits(teacher, tokenizer, texts, max_length, batch_size, progress=progress)


def transfer_texts(config: StudentConfig, train: LabelledData, teacher, tokenizer) -> list[str]:
    """Augmented texts: options.factor EDA texts per training text, plus one back-translation."""
    from .augment import augment_texts, back_translate, synonyms_for_texts

    options = config.augment_options()
    synonyms = {}
    if options.factor and {"synonym", "insert"} & set(options.ops):
        embeddings = teacher.get_input_embeddings().weight.detach().float().numpy()
        synonyms = synonyms_for_texts(train.texts, tokenizer, embeddings, options.neighbours)
    texts = augment_texts(train.texts, options, synonyms)
    if options.back_translate:
        texts += back_translate(train.texts, *options.back_translate, batch_size=config.teacher_batch_size)
    return texts


def logits_cache(config: StudentConfig):
    """The teacher-logits cache of --cache-dir (default ~/.cache/distill-edge); --no-cache: none."""
    from .cache import LogitsCache, default_cache_dir

    return LogitsCache(None if config.no_cache else (config.cache_dir or default_cache_dir()))


def teacher_scorer(config: StudentConfig, model, tokenizer, max_length: int):
    """score(texts) -> (n, k) logits of one teacher, as cached_logits wants it."""
    def score(texts):
        return score_with_teacher(model, tokenizer, texts, max_length, config.teacher_batch_size, config.progress)

    return score


def teacher_parts(config, train, unlabeled, unlabeled_sha, teacher, tokenizer, max_length, need_labelled):
    """{'labelled'|'augmented'|'unlabeled': cached_logits result} for the parts that exist."""
    from .cache import cached_logits, texts_sha256, weights_sha256

    cache = logits_cache(config)
    teacher_hash = weights_sha256(config.teacher)
    score = teacher_scorer(config, teacher, tokenizer, max_length)
    base = {"teacher": teacher_hash, "max_length": max_length}
    train_fields = {**base, "file": train.sha256, "texts": texts_sha256(train.texts)}
    parts = {}
    if need_labelled:
        parts["labelled"] = cached_logits(cache, {**train_fields, "part": "labelled"},
                                          lambda: train.texts, score)
    options = config.augment_options()
    if options.factor or options.back_translate:
        augmentation = asdict(options)
        if options.back_translate:
            augmentation["back_translate_weights"] = [weights_sha256(p) for p in options.back_translate]
        parts["augmented"] = cached_logits(
            cache, {**train_fields, "part": "augmented", "augmentation": augmentation},
            lambda: transfer_texts(config, train, teacher, tokenizer), score)
    if unlabeled:
        parts["unlabeled"] = cached_logits(
            cache, {**base, "part": "unlabeled", "file": unlabeled_sha, "texts": texts_sha256(unlabeled)},
            lambda: unlabeled, score)
    return parts, teacher_hash, cache.root


def load_ensemble(config: StudentConfig, labels: list[str]) -> list[tuple]:
    """[(directory, model, tokenizer)] of the --ensemble-teacher models; each must predict the
    teacher's labels in the teacher's order (their logits are averaged column by column)."""
    from .predict import load_model_dir

    members = []
    for other in config.ensemble:
        model, tokenizer, other_labels = load_model_dir(other)
        if other_labels != labels:
            raise StudentError(f"--ensemble-teacher {other}: labels {other_labels} are not --teacher's "
                               f"{labels} (same labels in the same order needed to average logits)")
        members.append((other, model, tokenizer))
    return members


def ensemble_parts(config: StudentConfig, parts: dict, members: list[tuple], max_length: int) -> tuple[dict, list]:
    """Each part's logits replaced by the mean over the teacher and the ensemble members of their
    logits for the same texts (each member scores them once with its own tokenizer, cached under
    its own weights hash). Returns (parts, one report entry per member)."""
    import numpy as np

    from .cache import cached_logits, texts_sha256, weights_sha256

    cache = logits_cache(config)
    totals = {name: np.asarray(p["logits"], dtype=np.float64) for name, p in parts.items()}
    report = []
    for directory, model, tokenizer in members:
        score = teacher_scorer(config, model, tokenizer, max_length)
        entry = {"teacher": str(directory), "weights_sha256": weights_sha256(directory), "teacher_logits": {}}
        for name, part in parts.items():
            fields = {"teacher": entry["weights_sha256"], "max_length": max_length, "part": name,
                      "texts": texts_sha256(part["texts"])}
            got = cached_logits(cache, fields, lambda part=part: part["texts"], score)
            totals[name] += got["logits"]
            entry["teacher_logits"][name] = {"rows": len(got["texts"]), "cache_hit": got["hit"],
                                             "key": got["key"], "seconds": got["seconds"]}
        report.append(entry)
    mean = {name: {**part, "logits": (totals[name] / (1 + len(members))).astype(np.float32)}
            for name, part in parts.items()}
    return mean, report


# ---------------------------------------------------------------- side by side

def timed_predict(model, tokenizer, texts, max_length: int, batch_size: int) -> tuple:
    """(logits, samples/s) of one CPU inference pass after a short warm-up."""
    from .predict import predict_logits

    predict_logits(model, tokenizer, texts[:batch_size], max_length, batch_size)
    start = time.perf_counter()
    logits = predict_logits(model, tokenizer, texts, max_length, batch_size)
    return logits, len(texts) / (time.perf_counter() - start)


def side_by_side(teacher_entry: dict, student_entry: dict) -> dict:
    t, s = teacher_entry, student_entry
    ratio = (lambda a, b: round(a / b, 4) if a is not None and b else None)
    return {"teacher": t, "student": s,
            "retention": ratio(s.get("accuracy"), t.get("accuracy")),
            "parameter_ratio": ratio(t["parameters"], s["parameters"]),
            "size_ratio": ratio(t["size_bytes"], s["size_bytes"]),
            "speedup": ratio(s.get("samples_per_second"), t.get("samples_per_second"))}


def unlabeled_options(path, options: DataOptions) -> DataOptions:
    """The data options for the unlabelled file: a .txt file is one text per line (its column
    can only be an index), whatever --text-column names the labelled files' column."""
    from dataclasses import replace

    from .data import resolve_format

    if resolve_format(path, options) == "txt" and not str(options.text_column).isdigit():
        return replace(options, text_column="text")
    return options


def read_student_data(config: StudentConfig, labels: list[str]):
    """(train, dev, unlabelled texts, unlabelled file sha256), in the teacher's label order."""
    import numpy as np

    from .data import file_sha256, load_labelled, load_texts, subsample

    train = subsample(load_labelled(config.train, config.data, labels=labels), config.max_train_samples, config.seed)
    dev = load_labelled(config.eval, config.data, labels=labels) if config.eval else None
    unlabeled, sha = [], None
    if config.unlabeled:
        unlabeled = load_texts(config.unlabeled, unlabeled_options(config.unlabeled, config.data))
        sha = file_sha256(config.unlabeled)
        if config.max_unlabeled is not None and config.max_unlabeled < len(unlabeled):
            pick = np.random.default_rng(config.seed).permutation(len(unlabeled))[:config.max_unlabeled]
            unlabeled = [unlabeled[i] for i in pick]
    return train, dev, unlabeled, sha


def distill_student(config: StudentConfig, callbacks=()) -> dict | None:
    """Distil config.teacher into a student saved atomically at config.out. Returns the
    training.json dict (None on non-main torchrun ranks)."""
    import numpy as np
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback

    from .losses import IGNORE
    from .metrics import evaluate
    from .predict import default_max_length, load_model_dir, softmax
    from .savedir import check_writable_target, dir_size_bytes, save_model_dir
    from .teacher import checkpoint_dir_for
    from .trainer import DistillationArguments, DistillationTrainer
    from .training import (EncodedRows, EpochHistory, count_parameters, encode_rows, last_checkpoint,
                           metrics_function, run_record, training_arguments)
    from .vocab_trim import retokenized, trim_vocab

    _check(config)
    check_writable_target(config.out, config.force)
    started = time.time()
    teacher, teacher_tokenizer, labels = load_model_dir(config.teacher)
    few_shot_head(teacher.config)          # an unknown head mark fails before the teacher pass
    max_length = config.max_length or default_max_length(config.teacher, teacher_tokenizer)
    train, dev, unlabeled, unlabeled_sha = read_student_data(config, labels)
    members = load_ensemble(config, labels)

    checkpoints = checkpoint_dir_for(config.out)
    resume_from = None
    if config.resume:
        resume_from = last_checkpoint(checkpoints)
        if resume_from is None:
            raise StudentError(f"--resume: no checkpoint found in {checkpoints}")
    args = training_arguments(
        DistillationArguments, checkpoint_dir=checkpoints, epochs=config.epochs, lr=config.lr,
        batch_size=config.batch_size, eval_batch_size=config.eval_batch_size, weight_decay=config.weight_decay,
        warmup=config.warmup, seed=config.seed, has_eval=dev is not None, early_stopping=config.early_stopping,
        metric=config.metric, logging_steps=config.logging_steps, progress=config.progress,
        temperature=config.temperature, alpha=config.alpha, kd_loss=config.kd_loss,
        remove_unused_columns=False)  # keep teacher_logits: the model's forward() does not take it
    if not config.resume and checkpoints.exists() and args.process_index == 0:
        shutil.rmtree(checkpoints)

    # Teacher logits for every training text, computed once (rank 0 first; the others then hit
    # the cache). Pure cross-entropy on labelled rows alone needs no teacher pass.
    transfer = bool(unlabeled) or config.augment_factor > 0 or bool(config.back_translate)
    with args.main_process_first(desc="teacher logits"):
        parts, teacher_hash, cache_root = teacher_parts(
            config, train, unlabeled, unlabeled_sha, teacher, teacher_tokenizer, max_length,
            need_labelled=config.alpha > 0 or transfer)
        if members and not parts:
            raise StudentError("--ensemble-teacher: alpha 0 without transfer data is plain cross-entropy, "
                               "no teacher logits to average")
        ensemble = None
        if members:
            parts, member_report = ensemble_parts(config, parts, members, max_length)
            ensemble = {"combine": "mean of the logits of --teacher and every --ensemble-teacher",
                        "members": member_report}

    student, layer_map, init = build_student(teacher, config)
    tokenizer, vocab_report = teacher_tokenizer, None
    transfer_rows = [t for name in ("augmented", "unlabeled") if name in parts for t in parts[name]["texts"]]
    if config.trim_vocab:
        tokenizer, vocab_report = trim_vocab(student, teacher_tokenizer, train.texts + transfer_rows, max_length,
                                             config.trim_min_count)
        if dev:
            vocab_report["eval_retokenized"] = retokenized(teacher_tokenizer, tokenizer, dev.texts, max_length)

    texts = train.texts + transfer_rows
    row_labels = list(train.labels) + [IGNORE] * len(transfer_rows)
    logits = None
    if parts:
        chunks = [parts["labelled"]["logits"]] + [parts[n]["logits"] for n in ("augmented", "unlabeled")
                                                   if n in parts and len(parts[n]["texts"])]
        logits = np.concatenate(chunks).tolist()
    train_rows: EncodedRows = encode_rows(tokenizer, texts, max_length, labels=row_labels, teacher_logits=logits)
    dev_rows = encode_rows(tokenizer, dev.texts, max_length, labels=dev.labels) if dev else None

    history = EpochHistory()
    all_callbacks = [history, *callbacks]
    if config.early_stopping is not None:
        all_callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping))
    trainer = DistillationTrainer(
        model=student, args=args, train_dataset=train_rows, eval_dataset=dev_rows,
        data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
        compute_metrics=metrics_function(labels) if dev else None, callbacks=all_callbacks)
    history.attach(trainer)
    train_start = time.time()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = time.time() - train_start

    report = None
    if trainer.is_world_process_zero():
        student = trainer.model.eval()
        teacher_entry = {"parameters": count_parameters(teacher),
                         "size_bytes": dir_size_bytes(config.teacher, "*.safetensors")}
        student_entry = {"parameters": count_parameters(student)}
        final = teacher_eval = None
        if dev is not None:
            t_logits, teacher_entry["samples_per_second"] = timed_predict(
                teacher, teacher_tokenizer, dev.texts, max_length, config.eval_batch_size)
            s_logits, student_entry["samples_per_second"] = timed_predict(
                student, tokenizer, dev.texts, max_length, config.eval_batch_size)
            teacher_eval = evaluate(np.asarray(dev.labels), softmax(t_logits), labels)
            final = evaluate(np.asarray(dev.labels), softmax(s_logits), labels)
            for entry, metrics in ((teacher_entry, teacher_eval), (student_entry, final)):
                entry.update(accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"])
            if members:
                from .predict import predict_logits

                mean_logits = (t_logits + sum(predict_logits(m, tok, dev.texts, max_length, config.eval_batch_size)
                                              for _, m, tok in members)) / (1 + len(members))
                ensemble["eval"] = evaluate(np.asarray(dev.labels), softmax(mean_logits), labels)
                ensemble["student_retention"] = round(final["accuracy"] / ensemble["eval"]["accuracy"], 4)
        resolved = {**asdict(config), "max_length": max_length, "layer_map": layer_map, "init": init,
                    "layers": len(layer_map)}
        report = {
            "command": "student",
            "config": resolved,
            "model_source": f"{config.teacher} (layers {layer_map}, init {init})",
            "labels": labels,
            "data": {"train": train.summary(), "eval": dev.summary() if dev else None,
                     "unlabeled": {"path": config.unlabeled, "sha256": unlabeled_sha, "rows": len(unlabeled)}
                     if config.unlabeled else None,
                     "rows": {"labelled": len(train), "augmented": len(parts.get("augmented", {}).get("texts", [])),
                              "unlabeled": len(unlabeled)},
                     "train_rows_used": len(train_rows)},
            "distillation": {
                "teacher": str(config.teacher), "teacher_weights_sha256": teacher_hash,
                "temperature": config.temperature, "alpha": config.alpha, "kd_loss": config.kd_loss,
                "alpha_weights": "the KD term; (1 - alpha) weights cross-entropy on labelled rows; rows "
                                 "without a label get KD at weight 1",
                "layer_map": layer_map, "init": init, "head": head_init(teacher.config, init),
                "teacher_parameters": teacher_entry["parameters"], "student_parameters": student_entry["parameters"],
                "teacher_eval": teacher_eval,
                "ensemble": ensemble,
                "teacher_logits": {name: {"rows": len(p["texts"]), "cache_hit": p["hit"], "key": p["key"],
                                          "seconds": p["seconds"]} for name, p in parts.items()},
                "cache_dir": str(cache_root) if cache_root else None,
                "augmentation": asdict(config.augment_options()),
                "vocab": vocab_report,
            },
            "training_args": {k: v for k, v in args.to_dict().items()
                              if isinstance(v, (str, int, float, bool, type(None)))},
            "parameters": student_entry["parameters"],
            "final_eval": final,
            **run_record(trainer, history, result, train_seconds, resume_from),
        }

        def add_comparison(saved_dir):   # the student's size is known once it is written
            student_entry["size_bytes"] = dir_size_bytes(saved_dir, "*.safetensors")
            report["comparison"] = side_by_side(teacher_entry, student_entry)

        save_model_dir(config.out, config.force, student, tokenizer, max_length, report, started,
                       vocab_txt=True, complete_report=add_comparison)
        if not config.keep_checkpoints:
            shutil.rmtree(checkpoints, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return report

