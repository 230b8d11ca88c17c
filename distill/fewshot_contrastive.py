"""`--few-shot contrastive`: SetFit-style (Tunstall et al. 2022) encoder tuning on pairs, then a head.

1. Pairs from the few labelled rows: half similar (two different rows of one class, target
   cosine 1), half dissimilar (rows of two classes, target 0); seeded. Default 40 per row, as
   SetFit's 20 iterations of one positive and one negative pair per sentence. The label
   descriptions of `--few-shot prompt` (--template, default "This review is {label}.", or
   --label-descriptions, every one of a label's lines; none for numeric labels without either)
   join the rows as more examples of their label, in the pairs and in the head: they carry the
   zero-shot prior. (On SST-2, 16 rows per class, seed 0: 72.0% dev accuracy with the template's
   one description per label, 68.8% without; SetFit's own settings, lr 2e-5 and batch 16, gave
   68.9%.)
2. The encoder is fine-tuned so the cosine similarity of the two rows' mean-pooled embeddings
   matches the target (mean squared error: sentence-transformers' CosineSimilarityLoss).
3. A multinomial logistic regression (L2, C = HEAD_C as scikit-learn counts it) is fitted on the
   tuned, normalised embeddings of the labelled rows; the saved model is the tuned encoder with
   that head over mean pooling (fewshot_head.py).
"""
from __future__ import annotations

import math
import time

import numpy as np

from .data import LabelledData
from .fewshot import FewShotError, embed_texts, load_encoder
from .fewshot_head import direct_logits, linear_head_model, mean_pool, normalise

PAIRS_PER_ROW = 40
HEAD_C = 1.0


def make_pairs(labels, n_pairs: int, seed: int) -> np.ndarray:
    """(n_pairs, 3) int array of (row i, row j, same class 1/0): n_pairs // 2 similar pairs
    (anchor drawn among rows whose class has another row, partner another row of that class),
    the rest dissimilar (anchor any row, partner a row of another class). Never i == j."""
    y = np.asarray(labels, dtype=np.int64)
    if n_pairs < 2:
        raise FewShotError("--pairs must be at least 2")
    members = {k: np.flatnonzero(y == k) for k in np.unique(y)}
    if len(members) < 2:
        raise FewShotError("contrastive pairs need rows of at least 2 classes")
    can_pair = np.concatenate([rows for rows in members.values() if len(rows) >= 2] or [np.zeros(0, np.int64)])
    if not len(can_pair):
        raise FewShotError("contrastive pairs need a class with at least 2 rows (for similar pairs)")
    rng = np.random.default_rng(seed)
    n_same = n_pairs // 2
    pairs = []
    for i in rng.choice(can_pair, n_same):
        others = members[y[i]][members[y[i]] != i]
        pairs.append((i, rng.choice(others), 1))
    for i in rng.choice(len(y), n_pairs - n_same):
        pairs.append((i, rng.choice(np.flatnonzero(y != y[i])), 0))
    pairs = np.asarray(pairs, dtype=np.int64)
    return pairs[rng.permutation(len(pairs))]


def cosine_pair_loss(encoder, left: dict, right: dict, target):
    """Mean squared error between cos(mean-pooled left, mean-pooled right) and target (B,)."""
    import torch

    u = mean_pool(encoder(**left).last_hidden_state, left["attention_mask"])     # (B, H)
    v = mean_pool(encoder(**right).last_hidden_state, right["attention_mask"])   # (B, H)
    cos = torch.nn.functional.cosine_similarity(u, v, dim=-1)                    # (B,)
    return torch.nn.functional.mse_loss(cos, target)


def tune_encoder(encoder, tokenizer, texts, pairs: np.ndarray, config, progress: bool = False) -> list[dict]:
    """Contrastive fine-tuning in place; returns one {'epoch', 'step', 'train_loss'} per epoch."""
    import torch
    from tqdm.auto import tqdm

    from .predict import encode
    from .training import adamw_with_schedule

    torch.manual_seed(config.seed)
    rows = encode(tokenizer, texts, config.max_length)
    batch = config.batch_size
    per_epoch = math.ceil(len(pairs) / batch)
    total = max(1, math.ceil(per_epoch * config.contrastive_epochs))
    optimizer, schedule = adamw_with_schedule(encoder, config.lr, config.weight_decay, config.warmup, total)
    rng = np.random.default_rng(config.seed)
    encoder.train()
    history, step = [], 0
    bar = tqdm(total=total, desc="contrastive", unit="step", disable=not progress)
    while step < total:
        order = pairs[rng.permutation(len(pairs))]
        losses = []
        for start in range(0, len(order), batch):
            if step >= total:
                break
            chunk = order[start:start + batch]
            left = tokenizer.pad([rows[i] for i in chunk[:, 0]], return_tensors="pt")
            right = tokenizer.pad([rows[j] for j in chunk[:, 1]], return_tensors="pt")
            target = torch.as_tensor(chunk[:, 2], dtype=torch.float32)
            loss = cosine_pair_loss(encoder, left, right, target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
            bar.update(1)
        history.append({"epoch": len(history) + 1, "step": step, "train_loss": float(np.mean(losses))})
    bar.close()
    encoder.eval()
    return history


def fit_logistic_regression(x: np.ndarray, y: np.ndarray, n_labels: int, c: float = HEAD_C,
                            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression minimising sum CE + |W|^2 / (2C) (scikit-learn's objective;
    the bias is not penalised), full-batch L-BFGS in float64. x (n, H), y (n,) -> W (K, H), b (K,)"""
    import torch

    torch.manual_seed(seed)
    X = torch.as_tensor(x, dtype=torch.float64)
    Y = torch.as_tensor(y, dtype=torch.int64)
    W = torch.zeros((n_labels, X.shape[1]), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_labels, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([W, b], lr=1.0, max_iter=500, tolerance_grad=1e-10,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(X @ W.T + b, Y, reduction="sum") + (W * W).sum() / (2 * c)
        loss.backward()
        return loss

    optimizer.step(objective)
    return W.detach().numpy(), b.detach().numpy()


def contrastive_teacher(config, source: str, train: LabelledData, dev) -> dict:
    start = time.time()
    labels = train.label_names
    y = np.asarray(train.labels, dtype=np.int64)
    missing = [name for k, name in enumerate(labels) if not (y == k).any()]
    if missing:
        raise FewShotError(f"{train.path}: no labelled rows for {', '.join(missing)}")
    from .fewshot_prompt import flatten_descriptions, label_descriptions

    descriptions = label_descriptions(config, labels, required=False) or []
    described, owners = flatten_descriptions(descriptions)
    texts = list(train.texts) + described
    y = np.concatenate([y, owners]).astype(np.int64)
    n_pairs = config.pairs or PAIRS_PER_ROW * len(texts)
    pairs = make_pairs(y, n_pairs, config.seed)
    encoder, tokenizer = load_encoder(source)
    history = tune_encoder(encoder, tokenizer, texts, pairs, config, progress=config.progress)
    x = normalise(embed_texts(encoder, tokenizer, texts, config.max_length, config.eval_batch_size))
    weights, bias = fit_logistic_regression(x, y, len(labels), seed=config.seed)
    model, head = linear_head_model(encoder, weights, bias, labels)

    from .predict import predict_logits
    saved = predict_logits(model, tokenizer, texts, config.max_length, config.eval_batch_size)
    direct = direct_logits(x, weights, bias)
    few_shot = {"method": "contrastive", "shots_per_class": config.shots, "rows": len(train),
                "label_descriptions": dict(zip(labels, descriptions)) if descriptions else None,
                "pairs": {"total": int(len(pairs)), "similar": int(pairs[:, 2].sum()),
                          "dissimilar": int(len(pairs) - pairs[:, 2].sum()), "seed": config.seed},
                "contrastive_epochs": config.contrastive_epochs, "loss": "MSE(cos(u, v), same class)",
                "classifier": {"type": "logistic regression on normalised mean-pooled embeddings",
                               "C": HEAD_C, "train_accuracy": float((direct.argmax(1) == y).mean())},
                "head": head, "head_check": {"texts": len(texts), "max_abs_logit_diff":
                                             float(np.abs(saved - direct).max())}}
    return {"model": model, "tokenizer": tokenizer, "few_shot": few_shot, "epochs": history,
            "train_seconds": time.time() - start}
