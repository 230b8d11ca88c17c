"""Other ways to tune the 16-row `contrastive-ens` teacher (bench_fewshot.py), chosen on val.

usage: python bench/bench_fewshot_tuning.py [--data DIR] [--seeds 0,1,2] [--variants NAME,...]
                                            [--results FILE]

Rows, descriptions and the "val" set (2,000 held-out training rows of at least 10 words) are
those of bench_fewshot_variants.py; every variant ends with the shipped head (logistic regression,
C=1, on the rows and descriptions) and is scored on dev and val. Variants:
  single             as shipped: cosine-similarity pairs, lr 5e-5, 1,280 pairs, 1 epoch, batch 32
  lrX-pairsN         the same loss with learning rate X and N pairs (SetFit's own lr is 2e-5)
  supcon             supervised contrastive loss (Khosla et al. 2020, temperature SUPCON_TAU) on
                     batches of 32 rows and descriptions drawn afresh each step, as many steps as
                     `single` (40); dropout on, as in training
  eda                `single` with EDA_FACTOR augmented copies of each row (distill/augment.py's
                     four ops, as `distill student --augment-factor`) among the texts the pairs
                     are drawn from; the head sees the rows and descriptions only
  end2end            `single`, then SetFit's end-to-end phase: encoder and the fitted head trained
                     together with cross-entropy (plus the head's L2 term, C=1) on the rows and
                     descriptions, E2E_EPOCHS epochs of batches of E2E_BATCH, encoder lr
                     E2E_BODY_LR, head lr E2E_HEAD_LR; scored with that trained head
Results: --results (default bench/results/fewshot_tuning.json) and a table on stdout.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
VARIANTS = ("single", "lr2e-05-pairs1280", "lr0.0001-pairs1280", "lr5e-05-pairs2560", "lr2e-05-pairs2560",
            "supcon", "eda", "end2end")
GRID = re.compile(r"lr([\d.e+-]+)-pairs(\d+)")           # lrX-pairsN
SUPCON_TAU = 0.07
EDA_FACTOR = 3
E2E_EPOCHS, E2E_BATCH, E2E_BODY_LR, E2E_HEAD_LR = 4, 16, 1e-5, 1e-2


def supcon_loss(z, labels, tau: float):
    """Supervised contrastive loss of unit embeddings z (B, H) with labels (B,): for each row, the
    mean over its same-label partners of -log softmax over all other rows of cos / tau."""
    import torch

    sim = (z @ z.T / tau).masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))   # (B, B)
    log_p = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]).fill_diagonal_(False)
    per_row = -log_p.masked_fill(~positive, 0.0).sum(1) / positive.sum(1).clamp(min=1)
    return per_row[positive.any(1)].mean()


def supcon_tune(encoder, tokenizer, texts, y, config, steps: int) -> None:
    import torch

    from distill.fewshot_head import mean_pool
    from distill.predict import encode
    from distill.training import adamw_with_schedule

    torch.manual_seed(config.seed)
    rows = encode(tokenizer, texts, config.max_length)
    optimizer, schedule = adamw_with_schedule(encoder, config.lr, config.weight_decay, config.warmup, steps)
    rng = np.random.default_rng(config.seed)
    encoder.train()
    for _ in range(steps):
        pick = rng.choice(len(texts), min(config.batch_size, len(texts)), replace=False)
        batch = tokenizer.pad([rows[i] for i in pick], return_tensors="pt")
        pooled = mean_pool(encoder(**batch).last_hidden_state, batch["attention_mask"])     # (B, H)
        z = torch.nn.functional.normalize(pooled, dim=-1)
        supcon_loss(z, torch.as_tensor(y[pick]), SUPCON_TAU).backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    encoder.eval()


def end_to_end(encoder, tokenizer, texts, y, weights, bias, config):
    """Train encoder and head (weights (K, H), bias (K,)) together in place; returns the head.
    Loss per batch: mean cross-entropy of <W, unit mean-pooled embedding> + b, plus
    |W|^2 / (2 C n), the logistic regression's own objective divided by its n rows."""
    import torch

    from distill.fewshot_head import mean_pool
    from distill.predict import encode

    torch.manual_seed(config.seed)
    rows = encode(tokenizer, texts, config.max_length)
    W = torch.nn.Parameter(torch.as_tensor(weights, dtype=torch.float32))
    b = torch.nn.Parameter(torch.as_tensor(bias, dtype=torch.float32))
    optimizer = torch.optim.AdamW([
        {"params": list(encoder.parameters()), "lr": E2E_BODY_LR, "weight_decay": config.weight_decay},
        {"params": [W, b], "lr": E2E_HEAD_LR, "weight_decay": 0.0}])
    rng = np.random.default_rng(config.seed)
    encoder.train()
    for _ in range(E2E_EPOCHS):
        order = rng.permutation(len(texts))
        for start in range(0, len(order), E2E_BATCH):
            pick = order[start:start + E2E_BATCH]
            batch = tokenizer.pad([rows[i] for i in pick], return_tensors="pt")
            pooled = mean_pool(encoder(**batch).last_hidden_state, batch["attention_mask"])   # (B, H)
            logits = torch.nn.functional.normalize(pooled, dim=-1) @ W.T + b                  # (B, K)
            loss = (torch.nn.functional.cross_entropy(logits, torch.as_tensor(y[pick]))
                    + (W * W).sum() / (2 * len(texts)))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    encoder.eval()
    return W.detach().double().numpy(), b.detach().double().numpy()


def eda_copies(encoder, tokenizer, texts, seed: int) -> list[str]:
    """EDA_FACTOR augmented copies of each text, in order (copies of text 0 first)."""
    from distill.augment import AugmentOptions, augment_texts, synonyms_for_texts

    embeddings = encoder.get_input_embeddings().weight.detach().float().numpy()
    options = AugmentOptions(factor=EDA_FACTOR, seed=seed)
    return augment_texts(texts, options, synonyms_for_texts(texts, tokenizer, embeddings, options.neighbours))


def main():
    import bench_fewshot as B
    import bench_fewshot_variants as V
    import torch

    from distill.fewshot import load_encoder
    from distill.fewshot_contrastive import fit_logistic_regression, make_pairs, tune_encoder
    from distill.fewshot_prompt import flatten_descriptions, read_label_descriptions
    from distill.teacher import TeachConfig, default_teacher_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("DISTILL_DATA_DIR", ROOT.parent / "shared" / "data"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--results", default=ROOT / "bench" / "results" / "fewshot_tuning.json")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in ("single", "supcon", "eda", "end2end") and not GRID.fullmatch(v)]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}")
    train_texts, train_labels, drawn, held_out, evaluation = V.draws(args.data, seeds, 16)
    described, owners = flatten_descriptions(read_label_descriptions(B.DESCRIPTIONS, B.LABEL_NAMES))
    encoder, tokenizer = load_encoder(default_teacher_path())
    pretrained = {name: value.detach().clone() for name, value in encoder.state_dict().items()}

    def embed(texts):
        return B.unit_embeddings(encoder, tokenizer, texts)

    rows = []
    for seed in seeds:
        row_texts = [train_texts[i] for i in drawn[seed]]
        texts = row_texts + described
        y = np.concatenate([train_labels[drawn[seed]], owners]).astype(np.int64)
        shipped = TeachConfig(**B.few_shot_settings("contrastive-ens", seed, len(drawn[seed])))
        for variant in variants:
            encoder.load_state_dict(pretrained)
            if variant == "supcon":
                supcon_tune(encoder, tokenizer, texts, y, shipped, math.ceil(shipped.pairs / shipped.batch_size))
            elif variant == "eda":
                copies = eda_copies(encoder, tokenizer, row_texts, seed)
                more_y = np.concatenate([y, np.repeat(train_labels[drawn[seed]], EDA_FACTOR)])
                tune_encoder(encoder, tokenizer, texts + copies, make_pairs(more_y, shipped.pairs, seed), shipped)
            else:
                config = shipped
                if variant not in ("single", "end2end"):
                    lr, pairs = GRID.fullmatch(variant).groups()
                    config = replace(shipped, lr=float(lr), pairs=int(pairs))
                tune_encoder(encoder, tokenizer, texts, make_pairs(y, config.pairs, seed), config)
            encoder.eval()
            weights, bias = fit_logistic_regression(embed(texts), y, 2)
            if variant == "end2end":
                weights, bias = end_to_end(encoder, tokenizer, texts, y, weights, bias, shipped)
            sets = {name: embed(t) for name, (t, _) in evaluation.items()}
            rows.append({"seed": seed, "variant": variant, **V.head_accuracies(weights, bias, sets, evaluation)})
            print(json.dumps(rows[-1]), flush=True)

    table = V.variant_table(rows, seeds)
    print(table)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(
        {"table": table, "runs": rows, "validation_rows": len(held_out), "supcon_tau": SUPCON_TAU,
         "eda_factor": EDA_FACTOR,
         "end2end": {"epochs": E2E_EPOCHS, "batch": E2E_BATCH, "body_lr": E2E_BODY_LR, "head_lr": E2E_HEAD_LR}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
