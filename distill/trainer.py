"""The Trainer side of distillation: arguments with T and alpha, and compute_loss.

Training rows carry `teacher_logits` (computed once, before training, see distill.cache) and
`labels` (-100 for transfer rows without a label). The teacher itself is never run here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainingArguments

from .losses import distillation_loss
from .training import record_losses


@dataclass
class DistillationArguments(TrainingArguments):
    """TrainingArguments plus the distillation settings (saved with the other arguments in each
    checkpoint's training_args.bin and in training.json)."""
    temperature: float = field(default=2.0, metadata={"help": "Softmax temperature T of the KD term."})
    alpha: float = field(default=0.5, metadata={"help": "Weight of the KD term; 1 - alpha weights "
                                                        "the cross-entropy on labelled rows."})
    kd_loss: str = field(default="kl", metadata={"help": "kl (T^2 * KL) or mse (on logits)."})

    def __post_init__(self):
        super().__post_init__()
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if not 0 <= self.alpha <= 1:
            raise ValueError("alpha must be in [0, 1]")
        if self.kd_loss not in ("kl", "mse"):
            raise ValueError(f"kd_loss must be kl or mse, not {self.kd_loss!r}")


class DistillationTrainer(Trainer):
    """Trainer whose loss is distill.losses.distillation_loss against precomputed teacher logits.
    Rows without `teacher_logits` (the eval set) get plain cross-entropy, so eval_loss is CE."""

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._parts_since_log: dict[str, list[float]] = {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels", None)
        teacher = inputs.pop("teacher_logits", None)
        outputs = model(**inputs)
        student = outputs.logits.float()                                  # (n, k)
        if teacher is None:
            loss = torch.nn.functional.cross_entropy(student, labels)
            record_losses(self, model, loss=loss, loss_ce=loss)
        else:
            args = self.args
            parts = distillation_loss(student, teacher, labels, args.temperature, args.alpha, args.kd_loss)
            loss = parts["loss"]
            logged = {"loss": loss, "loss_kd": parts["kd"]}
            if parts["ce"] is not None:
                logged["loss_ce"] = parts["ce"]
            record_losses(self, model, **logged)
            if model.training:
                for name in ("loss_kd", "loss_ce"):
                    if name in logged:
                        self._parts_since_log.setdefault(name, []).append(float(logged[name].detach()))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Training log lines also show the KD and CE parts (means since the previous line)."""
        if "loss" in logs and self._parts_since_log:
            for name, values in self._parts_since_log.items():
                logs[name] = round(sum(values) / len(values), 4)
            self._parts_since_log = {}
        super().log(logs, start_time)
