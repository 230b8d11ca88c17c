"""Trainer plumbing shared by `teach` and `student`: datasets, metrics, callbacks, arguments."""
from __future__ import annotations

import json
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from .config_checks import RESUMABLE_CHANGES
from .metrics import evaluate
from .predict import softmax
from .token_rows import TokenRows, tokenize_rows


class EncodedRows(torch.utils.data.Dataset):
    """Pre-tokenized rows (no padding, kept compactly: token_rows.py) plus per-row extras such as
    labels or teacher logits."""

    def __init__(self, tokens: TokenRows, **extras):
        self.tokens = tokens
        self.extras = {k: v for k, v in extras.items() if v is not None}
        self.n = len(tokens)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        row = self.tokens[i]
        for name, values in self.extras.items():
            row[name] = values[i]
        return row

    def subset(self, indices) -> "EncodedRows":
        idx = [int(i) for i in indices]
        return EncodedRows(self.tokens.take(idx), **{k: [v[i] for i in idx] for k, v in self.extras.items()})


def encode_rows(tokenizer, texts, max_length: int, progress: bool = False, **extras) -> EncodedRows:
    return EncodedRows(tokenize_rows(tokenizer, texts, max_length, progress=progress), **extras)


def metrics_function(label_names):
    """compute_metrics for Trainer: accuracy, macro-F1 and ROC-AUC from the logits."""

    def compute(prediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        report = evaluate(np.asarray(prediction.label_ids), softmax(np.asarray(logits)), label_names)
        auc = report["auc"]
        return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                "auc": float("nan") if auc is None else auc}

    return compute


HISTORY = "epoch_history.json"   # in each checkpoint: the history up to it, for --resume


class EpochHistory(TrainerCallback):
    """Per-epoch record for training.json: mean training losses (every batch, read from the
    trainer's `batch_losses`) and the eval metrics; and `steps`, the training loss the Trainer
    logs every `logging_steps` (a curve inside an epoch, for one-epoch runs). Saved with each
    checkpoint, so a run resumed from one still reports the epochs before it."""

    def __init__(self, resume_from: Path | None = None):
        saved = resume_from and Path(resume_from) / HISTORY
        record = json.loads(saved.read_text(encoding="utf-8")) if saved and saved.is_file() else {}
        self.epochs: list[dict] = record.get("epochs", [])
        self.steps: list[dict] = record.get("steps", [])
        self.trainer = None  # set by attach(); its compute_loss appends to trainer.batch_losses

    def attach(self, trainer) -> "EpochHistory":
        """Also removes the PrinterCallback the Trainer adds when the progress bars are off
        (--quiet): it printed raw log dicts; the command prints this history instead."""
        from transformers.trainer_callback import PrinterCallback

        self.trainer = trainer
        trainer.batch_losses = {}
        trainer.remove_callback(PrinterCallback)
        return self

    def _entry(self, state) -> dict:
        if not self.epochs or self.epochs[-1]["step"] != state.global_step:
            self.epochs.append({"epoch": epoch_number(state.epoch), "step": state.global_step})
        return self.epochs[-1]

    def on_epoch_end(self, args, state, control, **kwargs):
        entry = self._entry(state)
        for name, values in (self.trainer.batch_losses if self.trainer else {}).items():
            if values:
                entry[f"train_{name}"] = float(np.mean(values))
        if self.trainer:
            self.trainer.batch_losses = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.steps.append({"step": state.global_step, "epoch": round(float(state.epoch or 0), 4),
                               "loss": float(logs["loss"])})

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and checkpoint.is_dir():
            (checkpoint / HISTORY).write_text(json.dumps({"epochs": self.epochs, "steps": self.steps}),
                                              encoding="utf-8")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        entry = self._entry(state)
        for key, value in (metrics or {}).items():
            if key.startswith("eval_") and not key.endswith(("_runtime", "_per_second")):
                value = float(value)
                name = "eval_loss" if key == "eval_loss" else key[len("eval_"):]
                entry[name] = None if math.isnan(value) else value


def epoch_number(epoch) -> int | float:
    """The Trainer's epoch counter as the history records it: a whole number at an epoch's end,
    else the fraction reached (--epochs 1.4 ends at 1.4, --epochs 0.01 after its one step at,
    say, 0.125), where rounding printed an epoch 0 or 2 that never was."""
    value = float(epoch or 0)
    return int(round(value)) if abs(value - round(value)) < 1e-4 else round(value, 4)


def run_record(trainer, history: EpochHistory, result, train_seconds: float, resume_from,
               keep_checkpoints: bool) -> dict:
    """The part of training.json that describes the Trainer run, the same for teach and student.
    best_checkpoint is a path only when the checkpoints are kept (they are deleted otherwise)."""
    from .savedir import library_versions

    return {"epochs": history.epochs, "loss_curve": history.steps,
            "training_args": {k: v for k, v in trainer.args.to_dict().items()     # what the Trainer ran with
                              if isinstance(v, (str, int, float, bool, type(None)))},
            "best_step": trainer.state.best_global_step,
            "best_checkpoint": trainer.state.best_model_checkpoint if keep_checkpoints else None,
            "resumed_from": str(resume_from) if resume_from else None,
            "train_seconds": round(train_seconds, 2),
            "train_samples_per_second": result.metrics.get("train_samples_per_second"),
            "wall_seconds": None, "world_size": trainer.args.world_size, "versions": library_versions()}


def record_losses(trainer, model, **losses) -> None:
    """Remember this training batch's loss terms for the per-epoch history."""
    if model.training and hasattr(trainer, "batch_losses"):
        for name, value in losses.items():
            trainer.batch_losses.setdefault(name, []).append(float(value.detach()))


def warmup_steps_value(warmup: float) -> float | int:
    """--warmup below 1 is a fraction of the training steps, 1 or more a number of steps."""
    if warmup < 0:
        raise ValueError("--warmup must be >= 0")
    return float(warmup) if warmup < 1 else int(warmup)


def adamw_with_schedule(model, lr: float, weight_decay: float, warmup: float, total_steps: int):
    """(AdamW, linear warmup-then-decay schedule) over total_steps, for loops outside Trainer, set
    up as Trainer does: weight decay on every weight but biases and LayerNorm; --warmup steps or
    fraction (warmup_steps_value)."""
    from transformers import get_linear_schedule_with_warmup

    steps = warmup_steps_value(warmup)
    steps = int(steps * total_steps) if isinstance(steps, float) else steps
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    return optimizer, get_linear_schedule_with_warmup(optimizer, steps, total_steps)


def training_arguments(cls=TrainingArguments, *, checkpoint_dir: Path, epochs: float, lr: float,
                       batch_size: int, eval_batch_size: int, weight_decay: float, warmup: float,
                       seed: int, has_eval: bool, early_stopping: int | None, metric: str,
                       logging_steps: int, progress: bool, save_total_limit: int = 2,
                       **extra) -> TrainingArguments:
    """TrainingArguments for our runs: dynamic padding with length-grouped batches, linear decay
    after warmup, AdamW with weight decay, a checkpoint each epoch (for --resume)."""
    best = early_stopping is not None and has_eval
    return cls(
        output_dir=str(checkpoint_dir), num_train_epochs=epochs, learning_rate=lr,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=eval_batch_size,
        weight_decay=weight_decay, warmup_steps=warmup_steps_value(warmup),
        lr_scheduler_type="linear", seed=seed, data_seed=seed,
        train_sampling_strategy="group_by_length",
        eval_strategy="epoch" if has_eval else "no", save_strategy="epoch",
        save_total_limit=save_total_limit, load_best_model_at_end=best,
        metric_for_best_model=metric if best else None,
        logging_steps=logging_steps, logging_first_step=True, report_to=[],
        disable_tqdm=not progress, ddp_backend="gloo" if _distributed_on_cpu() else None,
        # pinned memory only helps a copy to an accelerator; without one torch warns on every run
        dataloader_pin_memory=torch.accelerator.is_available(),
        save_only_model=False, **extra)


def _distributed_on_cpu() -> bool:
    """Launched by torchrun with several processes and no GPU: use the gloo backend."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


class WeightedTrainer(Trainer):
    """Trainer with an optional class-weighted cross-entropy (--class-weights balanced)."""

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean

    def __init__(self, *args, class_weights: torch.Tensor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_weights = class_weights

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        weight = None if self.class_weights is None else self.class_weights.to(outputs.logits.device)
        loss = torch.nn.functional.cross_entropy(outputs.logits.float(), labels, weight=weight)
        record_losses(self, model, loss=loss)
        return (loss, outputs) if return_outputs else loss


RUN_SETTINGS = "run_settings.json"   # in OUT.checkpoints/: what --resume must match


def _as_json(settings: dict) -> dict:
    return json.loads(json.dumps(settings, default=str))  # tuples -> lists, as read back


# the settings that name files or model directories; --resume compares what they hold
INPUT_PATHS = ("train", "model", "teacher", "ensemble", "unlabeled", "label_descriptions",
               "back_translate", "data.label_names")


def _content(value):
    """The SHA-256 of a file, or of a model directory's weights, tokenizer and config (lists:
    one each); the value itself where it names nothing on disk (a hub id, an unset option)."""
    from .cache import weights_sha256
    from .data import file_sha256

    if isinstance(value, list):
        return [_content(v) for v in value]
    if not isinstance(value, str) or not os.path.exists(value):
        return value
    return file_sha256(value) if os.path.isfile(value) else weights_sha256(value)


def _take_inputs(settings: dict) -> dict:
    """Remove the INPUT_PATHS from settings (as JSON; "data.label_names" is the label_names of
    settings["data"]) and return them, {name: value}."""
    taken = {}
    for name in INPUT_PATHS:
        section, _, key = name.rpartition(".")
        holder = settings.get(section) if section else settings
        if isinstance(holder, dict) and key in holder:
            taken[name] = holder.pop(key)
    return taken


def input_contents(settings: dict) -> dict:
    return {name: _content(value) for name, value in _take_inputs(_as_json(settings)).items()}


def record_run_settings(checkpoint_dir: Path, settings: dict) -> None:
    """Write a fresh run's settings, and the contents of the files they name, beside its
    checkpoints, for a later --resume to check."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    record = {**_as_json(settings), "input_contents": input_contents(settings)}
    (checkpoint_dir / RUN_SETTINGS).write_text(json.dumps(record, indent=1), encoding="utf-8")


def check_resume_settings(checkpoint_dir: Path, settings: dict, error=ValueError) -> None:
    """--resume continues the interrupted run, so its settings must be that run's (except those
    in RESUMABLE_CHANGES): otherwise training.json would describe a run that never happened.
    Files and model directories are compared by content, not by how their path is spelled: a
    training file edited in place (a renamed label shifts every label id) is refused, the same
    file given by another path is not."""
    path = checkpoint_dir / RUN_SETTINGS
    if not path.exists():
        return  # checkpoints from before the settings were recorded
    saved, now = json.loads(path.read_text(encoding="utf-8")), _as_json(settings)
    changed = []
    saved_contents = saved.pop("input_contents", None)
    if saved_contents is not None:      # recorded by content: compare that, not the paths
        _take_inputs(saved)
        now_contents = {name: _content(value) for name, value in _take_inputs(now).items()}
        changed = [f"{name}: other contents than in the interrupted run" for name in INPUT_PATHS
                   if saved_contents.get(name) != now_contents.get(name)]
    changed = [f"{key} {saved.get(key)!r} -> {now.get(key)!r}" for key in sorted(set(saved) | set(now))
               if key not in RESUMABLE_CHANGES and saved.get(key) != now.get(key)] + changed
    if changed:
        raise error(f"--resume: the interrupted run in {checkpoint_dir} had other settings ("
                    f"{'; '.join(changed)}); resume with its settings, or start afresh without --resume")


@contextmanager
def no_checkpoints_without_a_save(checkpoint_dir: Path, resume: bool):
    """A fresh run that fails or is interrupted before its first checkpoint is saved (a check on
    the data, the teacher's scoring pass, the first epoch) removes OUT.checkpoints, which would
    hold nothing to resume from: only its run_settings.json. One with a saved checkpoint (this
    run's, or an earlier interrupted run's it did not get to replace) keeps it for --resume.
    Rank 0 of a torchrun launch only, as it alone writes the directory."""
    try:
        yield
    except BaseException:
        from .savedir import first_rank

        if not resume and first_rank() and checkpoint_dir.is_dir() and last_checkpoint(checkpoint_dir) is None:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        raise


def last_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The checkpoint with the highest step whose save finished (its trainer_state.json, which
    the Trainer writes after the weights and optimizer, exists): a run killed while saving leaves
    a newer, incomplete one, and resuming from it failed on every try."""
    if not checkpoint_dir.is_dir():
        return None
    complete = [path for path in checkpoint_dir.glob("checkpoint-*")
                if path.name.split("-", 1)[1].isdigit() and (path / "trainer_state.json").is_file()]
    return max(complete, key=lambda path: int(path.name.split("-", 1)[1]), default=None)


def check_resume_epochs(resume_from: Path, epochs: float, error=ValueError) -> None:
    """--epochs cannot be fewer than the checkpoint has trained (training.json would list epochs
    beyond --epochs). As many is fine: a run stopped after its last checkpoint is finished."""
    done = json.loads((resume_from / "trainer_state.json").read_text(encoding="utf-8")).get("epoch") or 0
    if epochs < done:
        raise error(f"--resume: {resume_from.name} has trained {done:g} epochs, more than --epochs "
                    f"{epochs:g}: give at least {done:g}, or start afresh without --resume")


def count_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def check_finite_training(model, history: EpochHistory, error=ValueError, hint: str = "") -> None:
    """A run that diverged is refused before anything is written: NaN or infinite weights, or a
    NaN or infinite training loss. hint: what to change, e.g. "Lower --lr (1e+08)"."""
    check_finite_weights(model, error, hint)
    check_finite_loss(history, error, hint)


def check_finite_loss(history: EpochHistory, error=ValueError, hint: str = "") -> None:
    """A training loss that became NaN or infinite (a --temperature near 0 divides the logits by
    it) can leave the weights finite, so check_finite_weights passes: refuse it too."""
    for entry in history.epochs:
        losses = {k: v for k, v in entry.items() if k.startswith("train_") and isinstance(v, float)}
        if any(not math.isfinite(v) for v in losses.values()):
            raise error(f"training diverged: the training loss is NaN or infinite at epoch {entry['epoch']}; "
                        f"nothing was written. {hint}".rstrip())


def check_finite_weights(model, error=ValueError, hint: str = "") -> None:
    """A run that diverged (a learning rate far too high) ends with NaN or infinite weights,
    which would be saved as a model that predicts one class, with NaN in training.json: refuse
    it, before anything is written. hint: what to change, e.g. "Lower --lr (1e+08)"."""
    from .model_checks import nonfinite_weights

    bad = nonfinite_weights(model)
    if bad:
        raise error(f"training diverged: {bad:,} of {count_parameters(model):,} weights are NaN or "
                    f"infinite after training; nothing was written. {hint}".rstrip())
