"""Distillation losses: pure torch functions on logits, no model, no Trainer.

The loss of one batch (n rows, k classes) is

    loss = mean_i [ w_i * KD_i + (1 - alpha) * CE_i ]

    KD_i = T^2 * KL(softmax(teacher_i / T) || softmax(student_i / T))   (--kd-loss kl)
         = mean_k (student_ik - teacher_ik)^2                            (--kd-loss mse, no T)
    CE_i = cross-entropy(student_i, label_i), 0 for a row without a label (label -100)
    w_i  = alpha for a labelled row, 1 for a row without a label

so `alpha` weights the distillation (KD) term and `1 - alpha` the hard-label cross-entropy, as
in DistilBERT and BERT-PKD (torchdistill puts alpha on the other term). When every row has a
label this is exactly `alpha * T^2 * KL_batchmean + (1 - alpha) * CE_mean`. Rows without a label
(augmented or unlabelled transfer texts) carry only the teacher's signal, at full weight.
T^2 keeps the KD gradients at the same scale whatever T (Hinton et al. 2015).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # label of a row without a label (the Hugging Face convention)


def kl_per_row(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)) per row. (n, k), (n, k) -> (n,)"""
    log_p_student = F.log_softmax(student / temperature, dim=-1)          # (n, k)
    log_p_teacher = F.log_softmax(teacher / temperature, dim=-1)          # (n, k)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)  # (n,)
    return kl * temperature ** 2


def mse_per_row(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the logits per row (Tang et al. 2019). (n, k) -> (n,)"""
    return ((student - teacher) ** 2).mean(-1)


def kd_per_row(student, teacher, temperature: float, kind: str = "kl") -> torch.Tensor:
    if kind == "kl":
        return kl_per_row(student, teacher, temperature)
    if kind == "mse":
        return mse_per_row(student, teacher)
    raise ValueError(f"kd loss must be 'kl' or 'mse', not {kind!r}")


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None,
                      temperature: float = 2.0, alpha: float = 0.5, kind: str = "kl") -> dict:
    """{'loss': scalar to minimise, 'kd': mean KD term, 'ce': mean CE over labelled rows (None
    when the batch has none)}. The teacher logits are constants: no gradient reaches them."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    if not 0 <= alpha <= 1:
        raise ValueError("alpha must be in [0, 1]")
    student = student.float()
    teacher = teacher.detach().float()
    kd = kd_per_row(student, teacher, temperature, kind)                  # (n,)
    if labels is None:
        labels = torch.full(kd.shape, IGNORE, dtype=torch.long, device=kd.device)
    labelled = labels != IGNORE                                           # (n,)
    ce = F.cross_entropy(student, labels, ignore_index=IGNORE, reduction="none")  # (n,), 0 where ignored
    kd_weight = torch.where(labelled, torch.full_like(kd, alpha), torch.ones_like(kd))
    loss = (kd_weight * kd + (1 - alpha) * ce).mean()
    n_labelled = int(labelled.sum())
    return {"loss": loss, "kd": kd.mean(),
            "ce": ce.sum() / n_labelled if n_labelled else None}
