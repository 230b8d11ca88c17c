"""`distill student`: a smaller BERT trained on the teacher's soft outputs.

Flow: read the data with the teacher's label order -> build transfer texts (augmentation,
unlabelled file) -> teacher logits for every training text, once, through the cache (with
--ensemble-teacher, every teacher's, averaged) -> build the
student (teacher layers or random init, optional trimmed vocabulary) -> DistillationTrainer ->
(with --trim-after-training, the vocabulary trimmed now instead) -> teacher and student side by
side on the eval set -> atomic save with training.json.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict

from .config_checks import check_metric_defined
from .student_config import StudentConfig, StudentError, check_config
from .student_model import build_student, few_shot_head, head_init, student_model_config
from .teacher_logits import ensemble_parts, load_ensemble, teacher_parts

__all__ = ["StudentConfig", "StudentError", "distill_student"]


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


def read_student_data(config: StudentConfig, labels: list[str]):
    """(train, dev, unlabelled texts, training.json's record of the unlabelled file or None), in
    the teacher's label order."""
    import numpy as np

    from .data import file_sha256, load_labelled, read_texts, subsample, unlabeled_options

    from .fewshot import FewShotError, per_class_sample

    train = subsample(load_labelled(config.train, config.data, labels=labels), config.max_train_samples, config.seed)
    try:
        train = per_class_sample(train, config.shots, config.seed)
    except FewShotError as error:
        raise StudentError(str(error)) from None
    dev = load_labelled(config.eval, config.data, labels=labels) if config.eval else None
    unlabeled, record = [], None
    if config.unlabeled:
        unlabeled, skipped = read_texts(config.unlabeled, unlabeled_options(config.unlabeled, config.data))
        record = {"path": config.unlabeled, "sha256": file_sha256(config.unlabeled), "file_rows": len(unlabeled),
                  "skipped": skipped}
        if config.max_unlabeled is not None and config.max_unlabeled < len(unlabeled):
            pick = np.random.default_rng(config.seed).permutation(len(unlabeled))[:config.max_unlabeled]
            unlabeled = [unlabeled[i] for i in pick]
        record["rows"] = len(unlabeled)
    return train, dev, unlabeled, record


def distill_student(config: StudentConfig, callbacks=()) -> dict | None:
    """Distil config.teacher into a student saved atomically at config.out, holding its lock
    (another run on the same output stops with OutputLockedError). Returns the training.json
    dict (None on non-main torchrun ranks)."""
    from .savedir import output_lock
    from .teacher import checkpoint_dir_for
    from .training import no_checkpoints_without_a_save

    with output_lock(config.out), no_checkpoints_without_a_save(checkpoint_dir_for(config.out), config.resume):
        return _distill_student(config, callbacks)


def _distill_student(config: StudentConfig, callbacks=()) -> dict | None:
    import numpy as np
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback

    from .losses import IGNORE
    from .metrics import evaluate
    from .model_checks import check_architecture, check_tokenizer
    from .predict import ModelDirError, default_max_length, load_model_dir, softmax
    from .savedir import check_spares_inputs, check_writable_target, dir_size_bytes, save_model_dir
    from .teacher import check_max_length, checkpoint_dir_for
    from .trainer import DistillationArguments, DistillationTrainer
    from .training import (EncodedRows, EpochHistory, check_finite_training, check_resume_epochs,
                           check_resume_settings, count_parameters, encode_rows, last_checkpoint,
                           metrics_function, record_run_settings, run_record, training_arguments)
    from .vocab_trim import apply_trim, kept_token_ids, retokenized

    check_config(config)
    check_writable_target(config.out, config.force)
    check_spares_inputs(config.out, {"--teacher": config.teacher, "--train": config.train, "--eval": config.eval,
                                     "--unlabeled": config.unlabeled, "--label-names": config.data.label_names,
                                     "--ensemble-teacher": config.ensemble, "--back-translate": config.back_translate})
    started = time.time()
    try:
        teacher, teacher_tokenizer, labels = load_model_dir(config.teacher)
    except ModelDirError as problem:     # a masked LM or a bare encoder: no labels to distil
        raise StudentError(f"--teacher {problem}") from None
    check_architecture(teacher.config, config.teacher, StudentError)   # the student is built from it
    check_tokenizer(teacher_tokenizer, teacher.config, config.teacher, StudentError)
    few_shot_head(teacher.config)          # an unknown head mark fails before the teacher pass
    student_model_config(teacher.config, config)   # and so does a student shape that cannot work
    max_length = config.max_length or default_max_length(config.teacher, teacher_tokenizer)
    check_max_length(max_length, teacher.config, config.teacher, StudentError)
    members = load_ensemble(config, labels, max_length)
    train, dev, unlabeled, unlabeled_record = read_student_data(config, labels)
    check_metric_defined(config, dev, StudentError)

    checkpoints = checkpoint_dir_for(config.out)
    resume_from = None
    if config.resume:
        resume_from = last_checkpoint(checkpoints)
        if resume_from is None:
            raise StudentError(f"--resume: no checkpoint found in {checkpoints}")
        check_resume_settings(checkpoints, asdict(config), StudentError)
        check_resume_epochs(resume_from, config.epochs, StudentError)
    args = training_arguments(
        DistillationArguments, checkpoint_dir=checkpoints, epochs=config.epochs, lr=config.lr,
        batch_size=config.batch_size, eval_batch_size=config.eval_batch_size, weight_decay=config.weight_decay,
        warmup=config.warmup, seed=config.seed, has_eval=dev is not None, early_stopping=config.early_stopping,
        metric=config.metric, logging_steps=config.logging_steps, progress=config.progress,
        temperature=config.temperature, alpha=config.alpha, kd_loss=config.kd_loss,
        remove_unused_columns=False)  # keep teacher_logits: the model's forward() does not take it
    if not config.resume and args.process_index == 0:
        if checkpoints.exists():
            shutil.rmtree(checkpoints)
        record_run_settings(checkpoints, asdict(config))

    # Teacher logits for every training text, computed once (rank 0 first; the others then hit
    # the cache). Pure cross-entropy on labelled rows alone needs no teacher pass.
    transfer = bool(unlabeled) or config.augment_factor > 0 or bool(config.back_translate)
    with args.main_process_first(desc="teacher logits"):
        parts, teacher_hash, cache_root = teacher_parts(
            config, train, unlabeled, unlabeled_record["sha256"] if unlabeled_record else None, teacher,
            teacher_tokenizer, max_length,
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
    tokenizer, vocab_report, kept = teacher_tokenizer, None, None
    transfer_rows = [t for name in ("augmented", "unlabeled") if name in parts for t in parts[name]["texts"]]

    def trim(model):                 # -> (trimmed tokenizer, report); the model's rows in place
        trimmed, trim_report = apply_trim(model, teacher_tokenizer, kept, {
            "min_count": config.trim_min_count, "characters": config.trim_characters,
            "max_tokens": config.trim_max_tokens, "rank": config.trim_rank,
            "after_training": config.trim_after_training})
        if dev:
            trim_report["eval_retokenized"] = retokenized(teacher_tokenizer, trimmed, dev.texts, max_length)
        return trimmed, trim_report

    if config.trim_vocab:             # the kept tokens are chosen (and a bad budget refused) before training
        try:
            kept = kept_token_ids(teacher_tokenizer, train.texts + transfer_rows, max_length, config.trim_min_count,
                                  config.trim_characters, config.trim_max_tokens, config.trim_rank)
        except ValueError as error:
            raise StudentError(f"--trim-max-tokens: {error}") from error
        if not config.trim_after_training:
            tokenizer, vocab_report = trim(student)

    texts = train.texts + transfer_rows
    row_labels = list(train.labels) + [IGNORE] * len(transfer_rows)
    logits = None
    if parts:
        chunks = [parts[n]["logits"] for n in ("labelled", "augmented", "unlabeled")
                  if n in parts and len(parts[n]["texts"])]
        logits = np.concatenate(chunks).tolist()
    train_rows: EncodedRows = encode_rows(tokenizer, texts, max_length, progress=config.progress, labels=row_labels,
                                          teacher_logits=logits)
    dev_rows = encode_rows(tokenizer, dev.texts, max_length, labels=dev.labels) if dev else None

    history = EpochHistory(resume_from)
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
    check_finite_training(trainer.model, history, StudentError,
                          f"Lower --lr ({config.lr:g}) or raise --temperature ({config.temperature:g})")

    report = None
    if trainer.is_world_process_zero():
        student = trainer.model.eval()
        if kept is not None and config.trim_after_training:
            tokenizer, vocab_report = trim(student)
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
        copied = layer_map if init == "teacher" else None      # a random student copies no layer
        resolved = {**asdict(config), "max_length": max_length, "layer_map": copied, "init": init,
                    "layers": len(layer_map)}
        report = {
            "command": "student",
            "config": resolved,
            "model_source": f"{config.teacher} (layers {layer_map}, init {init})" if copied else
                            f"{config.teacher} ({len(layer_map)} layer{'s' * (len(layer_map) > 1)}, init {init})",
            "labels": labels,
            "data": {"train": train.summary(), "eval": dev.summary() if dev else None,
                     "unlabeled": unlabeled_record,
                     "rows": {"labelled": len(train), "augmented": len(parts.get("augmented", {}).get("texts", [])),
                              "unlabeled": len(unlabeled)},
                     "train_rows_used": len(train_rows)},
            "distillation": {
                "teacher": str(config.teacher), "teacher_weights_sha256": teacher_hash,
                "temperature": config.temperature, "alpha": config.alpha, "kd_loss": config.kd_loss,
                "alpha_weights": "the KD term; (1 - alpha) weights cross-entropy on labelled rows; rows "
                                 "without a label get KD at weight 1",
                "layer_map": copied, "init": init, "head": head_init(teacher.config, init),
                "teacher_parameters": teacher_entry["parameters"], "student_parameters": student_entry["parameters"],
                "teacher_eval": teacher_eval,
                "ensemble": ensemble,
                "teacher_logits": {name: {"rows": len(p["texts"]), "cache_hit": p["hit"], "key": p["key"],
                                          "seconds": p["seconds"]} for name, p in parts.items()},
                "cache_dir": str(cache_root) if cache_root else None,
                "augmentation": asdict(config.augment_options()),
                "vocab": vocab_report,
            },
            "parameters": student_entry["parameters"],
            "final_eval": final,
            **run_record(trainer, history, result, train_seconds, resume_from, config.keep_checkpoints),
        }

        def add_comparison(saved_dir):   # the student's size is known once it is written
            student_entry["size_bytes"] = dir_size_bytes(saved_dir, "*.safetensors")
            report["comparison"] = side_by_side(teacher_entry, student_entry)

        save_model_dir(config.out, config.force, student, tokenizer, max_length, report, started,
                       complete_report=add_comparison)
        if not config.keep_checkpoints:
            shutil.rmtree(checkpoints, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return report

