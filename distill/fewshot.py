"""`distill teach --few-shot prompt|contrastive|pet`: teachers from a handful of labelled rows.

- prompt (fewshot_prompt.py): label descriptions from a template, cosine similarity of
  mean-pooled embeddings; no gradient steps.
- contrastive (fewshot_contrastive.py): SetFit-style pair fine-tuning of the encoder (the label
  descriptions join the rows), then a logistic-regression head on the tuned embeddings.
- pet (fewshot_pet.py): cloze pattern + verbaliser on a masked-language model, then PET's own
  last step, a sequence classifier trained on the cloze model's soft labels.

Every method writes a standard model directory (AutoModelForSequenceClassification, tokenizer
files, training.json) that `distill eval`, `distill student --teacher` and `distill export onnx`
take like any other teacher. This module holds the dispatch and what the methods share.
"""
from __future__ import annotations

import time
from dataclasses import asdict, replace

import numpy as np

from .data import LabelledData, load_labelled
from .predict import quiet_transformers
from .config_checks import (changed_from_default, check_counts, check_minimum, check_positive, check_schedule,
                            check_seed)
from .teacher import TeachConfig, TeachError, check_base_model, check_model_source, default_teacher_path

METHODS = ("prompt", "contrastive", "pet")
DEFAULT_TEMPLATES = {"prompt": "This review is {label}.", "contrastive": "This review is {label}.",
                     "pet": "{text} It was [MASK]."}


class FewShotError(TeachError):
    """A few-shot setting that cannot work, reported before any training."""


# ---------------------------------------------------------------- settings and data

def template_for(config: TeachConfig) -> str | None:
    return config.template if config.template is not None else DEFAULT_TEMPLATES.get(config.few_shot)


# the training settings of `teach` and the methods that use them; the others refuse them
USED_BY = {"epochs": ("pet",), "contrastive_epochs": ("contrastive",), "final_epochs": ("pet",),
           "lr": ("contrastive", "pet"), "batch_size": ("contrastive", "pet"), "warmup": ("contrastive", "pet"),
           "weight_decay": ("contrastive", "pet"), "logging_steps": ("pet",)}
NOT_USED = ("dropout", "extend_vocab", "extend_vocab_words", "extend_vocab_init", "keep_checkpoints", "metric")


def check_few_shot(config: TeachConfig, given: frozenset = frozenset()) -> None:
    """Options that belong to another method, or cannot work, stop the run before loading anything.
    given: the settings the command line named, refused even at their default values."""
    method = config.few_shot
    if method not in METHODS:
        raise FewShotError(f"--few-shot must be one of {', '.join(METHODS)}, not {method!r}")
    only = {"label_descriptions": ("--label-descriptions", ("prompt", "contrastive")),
            "logit_scale": ("--logit-scale", ("prompt",)),
            "pairs": ("--pairs", ("contrastive",)),
            "verbalizer": ("--verbalizer", ("pet",)),
            "unlabeled": ("--unlabeled", ("pet",))}
    elsewhere = {"unlabeled": "; a {method} teacher learns from unlabelled texts through "
                              "`distill student --teacher DIR --unlabeled FILE`"}
    for field, (flag, methods) in only.items():
        if getattr(config, field) is not None and method not in methods:
            hint = elsewhere.get(field, "").format(method=method)
            raise FewShotError(f"{flag} applies to --few-shot {' or '.join(methods)}, not {method}{hint}")
    unsupported = {"freeze_encoder": config.freeze_encoder, "resume": config.resume,
                   "early_stopping": config.early_stopping is not None,
                   "class_weights": config.class_weights != "none", "resample": config.resample != "none",
                   "max_train_samples": config.max_train_samples is not None}
    bad = [f"--{name.replace('_', '-')}" for name, used in unsupported.items() if used]
    bad += changed_from_default(config, NOT_USED, given)
    if bad:
        hint = " (use --shots to pick rows per class)" if "--max-train-samples" in bad else ""
        raise FewShotError(f"{', '.join(bad)}: not used by --few-shot{hint}")
    for name, methods in USED_BY.items():
        if method not in methods and changed_from_default(config, (name,), given):
            raise FewShotError(f"--{name.replace('_', '-')} applies to --few-shot {' or '.join(methods)}, "
                               f"not {method}")
    if config.template is not None and config.label_descriptions:
        raise FewShotError("--template and --label-descriptions both describe the labels: give one")
    check_counts({"--eval-batch-size": config.eval_batch_size, "--logging-steps": config.logging_steps},
                 FewShotError)
    check_schedule(config, FewShotError)
    check_seed(config.seed, FewShotError)
    if config.model:
        check_model_source(config.model)
    if config.shots is not None and config.shots < 0:
        raise FewShotError("--shots must be >= 0")
    if config.shots == 0 and method != "prompt":
        raise FewShotError(f"--shots 0 (zero-shot) needs --few-shot prompt; {method} learns from rows")
    if config.pairs is not None and config.pairs < 2:
        raise FewShotError("--pairs must be at least 2 (one similar, one dissimilar)")
    if config.logit_scale is not None and config.logit_scale <= 0:
        raise FewShotError("--logit-scale must be > 0")
    check_positive({"--contrastive-epochs": config.contrastive_epochs, "--final-epochs": config.final_epochs,
                    "--epochs": config.epochs, "--lr": config.lr, "--batch-size": config.batch_size}, FewShotError)
    check_minimum("--max-length", config.max_length, 4, FewShotError)


def per_class_sample(data: LabelledData, shots: int | None, seed: int) -> LabelledData:
    """`shots` rows of every class, drawn with default_rng(seed) (None: all rows; 0: none, the
    file then only names the labels). A class with fewer rows than `shots` is an error."""
    if shots is None:
        return data
    y = np.asarray(data.labels)
    rng = np.random.default_rng(seed)
    picked = []
    for k, name in enumerate(data.label_names):
        rows = np.flatnonzero(y == k)
        if len(rows) < shots:
            raise FewShotError(f"{data.path}: --shots {shots} but label {name!r} has only {len(rows)} rows")
        picked.extend(rng.choice(rows, shots, replace=False).tolist())
    picked.sort()
    return replace(data, texts=[data.texts[i] for i in picked], labels=[data.labels[i] for i in picked],
                   lines=[data.lines[i] for i in picked])


def read_few_shot_data(config: TeachConfig) -> tuple[LabelledData, LabelledData | None]:
    full = load_labelled(config.train, config.data)
    train = per_class_sample(full, config.shots, config.seed)
    dev = load_labelled(config.eval, config.data, labels=train.label_names) if config.eval else None
    return train, dev


# ---------------------------------------------------------------- encoders and embeddings

def load_encoder(source: str):
    """(BertModel in eval mode, tokenizer) of any BERT checkpoint (a sentence-transformers
    directory, a bare BertModel or a classifier whose head is ignored)."""
    from transformers import AutoModel, BertModel

    from .tokenization import load_tokenizer

    with quiet_transformers():
        encoder = AutoModel.from_pretrained(source)
    if not isinstance(encoder, BertModel):
        raise FewShotError(f"{source}: --few-shot prompt/contrastive build a BERT classifier; this "
                           f"checkpoint loads as {type(encoder).__name__}")
    return encoder.eval(), load_tokenizer(source)


def embed_texts(encoder, tokenizer, texts, max_length: int, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled last hidden states (not normalised), float32 (n, H), in input order; no grad,
    length-sorted batches with dynamic padding."""
    import torch

    from .fewshot_head import mean_pool
    from .predict import encode, length_sorted_batches, model_device

    rows = encode(tokenizer, texts, max_length)
    out = np.zeros((len(rows), encoder.config.hidden_size), dtype=np.float32)
    was_training = encoder.training
    encoder.eval()
    device = model_device(encoder)
    with torch.inference_mode():
        for idx in length_sorted_batches(rows.lengths(), batch_size):
            batch = tokenizer.pad([rows[i] for i in idx], return_tensors="pt").to(device)
            hidden = encoder(**batch).last_hidden_state                    # (B, T, H)
            out[idx] = mean_pool(hidden, batch["attention_mask"]).float().cpu().numpy()
    encoder.train(was_training)
    return out


# ---------------------------------------------------------------- dispatch and saving

def teach_few_shot(config: TeachConfig) -> dict:
    """Run the chosen method, evaluate the saved model on --eval, write OUT atomically.
    Returns the training.json dict."""
    from .savedir import check_spares_inputs, check_writable_target
    from .teacher import teach_inputs

    check_few_shot(config)
    check_writable_target(config.out, config.force)
    check_spares_inputs(config.out, teach_inputs(config))
    started = time.time()
    source = config.model or default_teacher_path()
    check_base_model(source, config.max_length, FewShotError)
    train, dev = read_few_shot_data(config)
    if config.few_shot == "prompt":
        from .fewshot_prompt import prompt_teacher as run
    elif config.few_shot == "contrastive":
        from .fewshot_contrastive import contrastive_teacher as run
    else:
        from .fewshot_pet import pet_teacher as run
    result = run(config, source, train, dev)
    return save_teacher(config, source, train, dev, result, started)


def save_teacher(config: TeachConfig, source: str, train: LabelledData, dev, result: dict,
                 started: float) -> dict:
    """result: {'model', 'tokenizer', 'few_shot' (method report), 'epochs', 'train_seconds'}."""
    from .metrics import evaluate
    from .predict import predict_logits, softmax
    from .savedir import library_versions, save_model_dir
    from .training import count_parameters

    model, tokenizer = result["model"].eval(), result["tokenizer"]
    labels = train.label_names
    final = None
    if dev is not None:
        logits = predict_logits(model, tokenizer, dev.texts, config.max_length, config.eval_batch_size)
        final = evaluate(np.asarray(dev.labels), softmax(logits), labels)
    report = {
        "command": "teach",
        "config": {**asdict(config), "model": source, "template": template_for(config)},
        "model_source": source,
        "labels": labels,
        "data": {"train": train.summary(), "eval": dev.summary() if dev else None,
                 "train_rows_used": len(train),
                 "train_class_counts": train.counts() if len(train) else [0] * len(labels)},
        "few_shot": result["few_shot"],
        "parameters": count_parameters(model),
        "epochs": result.get("epochs", []),
        "final_eval": final,
        "train_seconds": round(result.get("train_seconds", 0.0), 2),
        "train_samples_per_second": None,
        "wall_seconds": None,
        "world_size": 1,
        "versions": library_versions(),
    }
    save_model_dir(config.out, config.force, model, tokenizer, config.max_length, report, started)
    return report

