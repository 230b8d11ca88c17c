"""Distillation loss (distill.losses) and the Trainer wiring (distill.trainer)."""
import pytest
import torch
import torch.nn.functional as F

from distill.losses import IGNORE, distillation_loss, kl_per_row, mse_per_row


def logits(seed, n=6, k=3, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * scale


LABELS = torch.tensor([0, 2, 1, 1, 0, 2])


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_alpha_zero_is_plain_cross_entropy(temperature):
    s, t = logits(0), logits(1)
    out = distillation_loss(s, t, LABELS, temperature=temperature, alpha=0.0)
    assert torch.allclose(out["loss"], F.cross_entropy(s, LABELS))
    assert torch.allclose(out["ce"], F.cross_entropy(s, LABELS))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_alpha_one_is_pure_kd_and_ignores_labels(temperature):
    s, t = logits(2), logits(3)
    out = distillation_loss(s, t, LABELS, temperature=temperature, alpha=1.0)
    expected = F.kl_div(F.log_softmax(s / temperature, -1), F.softmax(t / temperature, -1),
                        reduction="batchmean") * temperature ** 2
    assert torch.allclose(out["loss"], expected, atol=1e-6)
    other = distillation_loss(s, t, LABELS.flip(0), temperature=temperature, alpha=1.0)
    assert torch.allclose(out["loss"], other["loss"])


def test_mixture_and_unlabelled_rows():
    s, t = logits(4), logits(5)
    T, alpha = 2.0, 0.3
    kd = kl_per_row(s, t, T)                                  # (n,)
    ce = F.cross_entropy(s, LABELS, reduction="none")         # (n,)
    full = distillation_loss(s, t, LABELS, T, alpha)
    assert torch.allclose(full["loss"], alpha * kd.mean() + (1 - alpha) * ce.mean(), atol=1e-6)

    # rows 1 and 4 have no label: KD at weight 1, no cross-entropy
    labels = LABELS.clone()
    labels[[1, 4]] = IGNORE
    mixed = distillation_loss(s, t, labels, T, alpha)
    has = labels != IGNORE
    per_row = torch.where(has, alpha * kd + (1 - alpha) * ce, kd)
    assert torch.allclose(mixed["loss"], per_row.mean(), atol=1e-6)
    assert torch.allclose(mixed["ce"], ce[has].mean(), atol=1e-6)
    none = distillation_loss(s, t, torch.full_like(LABELS, IGNORE), T, alpha)
    assert none["ce"] is None and torch.allclose(none["loss"], kd.mean(), atol=1e-6)


def test_kl_is_t_squared_times_kl_of_softened_outputs():
    s, t = logits(6), logits(7)
    for T in (1.0, 2.0, 5.0):
        p, q = F.softmax(t / T, -1), F.softmax(s / T, -1)
        manual = (p * (p.log() - q.log())).sum(-1) * T * T
        assert torch.allclose(kl_per_row(s, t, T), manual, atol=1e-5)
    assert torch.all(kl_per_row(t, t, 2.0).abs() < 1e-6)


def kd_gradient_norm(T, scale_by_t_squared=True):
    s = logits(8).requires_grad_()
    loss = distillation_loss(s, logits(9), LABELS, temperature=T, alpha=1.0)["loss"]
    if not scale_by_t_squared:
        loss = loss / T ** 2
    loss.backward()
    return s.grad.norm().item()


def test_t_squared_keeps_gradient_scale_across_temperatures():
    # d/ds of T^2 KL -> (s - t) / (k n) for large T: the scale no longer depends on T
    ratio = kd_gradient_norm(16.0) / kd_gradient_norm(8.0)
    assert 0.9 < ratio < 1.1
    unscaled = kd_gradient_norm(16.0, False) / kd_gradient_norm(8.0, False)
    assert 0.2 < unscaled < 0.3   # without T^2 the gradient shrinks as 1/T^2


def test_gradients_flow_only_into_the_student():
    s = logits(10).requires_grad_()
    t = logits(11).requires_grad_()
    for kind in ("kl", "mse"):
        s.grad = None
        distillation_loss(s, t, LABELS, 2.0, 0.5, kind)["loss"].backward()
        assert s.grad is not None and s.grad.abs().sum() > 0
        assert t.grad is None


def test_mse_variant_on_logits_without_temperature():
    s, t = logits(12), logits(13)
    expected = ((s - t) ** 2).mean()
    for T in (1.0, 4.0):
        out = distillation_loss(s, t, LABELS, temperature=T, alpha=1.0, kind="mse")
        assert torch.allclose(out["loss"], expected, atol=1e-6)
    assert torch.allclose(mse_per_row(s, t), ((s - t) ** 2).mean(-1))


def test_bad_settings_raise():
    s, t = logits(0), logits(1)
    with pytest.raises(ValueError):
        distillation_loss(s, t, LABELS, temperature=0.0)
    with pytest.raises(ValueError):
        distillation_loss(s, t, LABELS, alpha=1.5)
    with pytest.raises(ValueError):
        distillation_loss(s, t, LABELS, kind="cosine")


class FixedModel(torch.nn.Module):
    training = True

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, **inputs):
        return type("Out", (), {"logits": self.out})()


def test_trainer_compute_loss_uses_arguments_and_logs_parts(tmp_path):
    from distill.trainer import DistillationArguments, DistillationTrainer

    args = DistillationArguments(output_dir=str(tmp_path), temperature=3.0, alpha=0.25, report_to=[])
    assert args.to_dict()["temperature"] == 3.0 and args.to_dict()["alpha"] == 0.25
    trainer = DistillationTrainer.__new__(DistillationTrainer)
    trainer.args, trainer.batch_losses, trainer._parts_since_log = args, {}, {}
    s, t = logits(14), logits(15)
    loss = trainer.compute_loss(FixedModel(s), {"labels": LABELS, "teacher_logits": t})
    assert torch.allclose(loss, distillation_loss(s, t, LABELS, 3.0, 0.25)["loss"])
    assert set(trainer.batch_losses) == {"loss", "loss_kd", "loss_ce"}
    assert set(trainer._parts_since_log) == {"loss_kd", "loss_ce"}
    # evaluation rows carry no teacher logits: plain cross-entropy
    assert torch.allclose(trainer.compute_loss(FixedModel(s), {"labels": LABELS}), F.cross_entropy(s, LABELS))
    for bad in ({"temperature": 0.0}, {"alpha": -0.1}, {"kd_loss": "l1"}):
        with pytest.raises(ValueError):
            DistillationArguments(output_dir=str(tmp_path), report_to=[], **bad)
