"""Teacher logits for every text the student trains on, computed once: one no-grad pass per
teacher through the logits cache (distill/cache.py), the transfer texts made beside it, and the
mean over an --ensemble-teacher set."""
from __future__ import annotations

from dataclasses import asdict

from .data import LabelledData
from .student_config import StudentConfig, StudentError


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


def scoring_fields(config: StudentConfig) -> dict:
    """Cache-key fields for how the teacher scored: the batch size (batches pad to their own
    longest text, and another padding moves logits by about 1e-8; back-translation generates in
    those batches) and torch's thread count (float sums split otherwise), so a cache hit gives
    the very logits this run would compute."""
    import torch

    return {"batch_size": config.teacher_batch_size, "threads": torch.get_num_threads()}


def teacher_parts(config, train, unlabeled, unlabeled_sha, teacher, tokenizer, max_length, need_labelled):
    """{'labelled'|'augmented'|'unlabeled': cached_logits result} for the parts that exist."""
    from .cache import cached_logits, texts_sha256, weights_sha256

    cache = logits_cache(config)
    teacher_hash = weights_sha256(config.teacher)
    score = teacher_scorer(config, teacher, tokenizer, max_length)
    base = {"teacher": teacher_hash, "max_length": max_length, **scoring_fields(config)}
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


def load_ensemble(config: StudentConfig, labels: list[str], max_length: int) -> list[tuple]:
    """[(directory, model, tokenizer)] of the --ensemble-teacher models; each must predict the
    teacher's labels in the teacher's order (their logits are averaged column by column) and
    read max_length tokens."""
    from .predict import load_model_dir
    from .teacher import check_max_length

    members = []
    for other in config.ensemble:
        model, tokenizer, other_labels = load_model_dir(other)
        if other_labels != labels:
            raise StudentError(f"--ensemble-teacher {other}: labels {other_labels} are not --teacher's "
                               f"{labels} (same labels in the same order needed to average logits)")
        check_max_length(max_length, model.config, f"--ensemble-teacher {other}", StudentError)
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
                      "texts": texts_sha256(part["texts"]), **scoring_fields(config)}
            got = cached_logits(cache, fields, lambda part=part: part["texts"], score)
            totals[name] += got["logits"]
            entry["teacher_logits"][name] = {"rows": len(got["texts"]), "cache_hit": got["hit"],
                                             "key": got["key"], "seconds": got["seconds"]}
        report.append(entry)
    mean = {name: {**part, "logits": (totals[name] / (1 + len(members))).astype(np.float32)}
            for name, part in parts.items()}
    return mean, report
