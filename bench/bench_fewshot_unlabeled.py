"""Can the few-shot teachers use unlabelled text themselves? Self-training variants of the 16-row
`contrastive-ens` teacher and of the zero-shot prompt ensemble (bench_fewshot.py), none adopted.

usage: python bench/bench_fewshot_unlabeled.py [--data DIR] [--seeds 0,1,2] [--unlabeled 20000]

Rows, descriptions, tuning and the "val" set (2,000 held-out training rows of at least 10 words)
are those of bench_fewshot_variants.py. The unlabelled texts are --unlabeled other SST-2 training
rows (seeded; none of them drawn by a seed or in val), labels unused except to report how right
the pseudo-labels are. Variants, each scored on dev and val:
  zero            prompt-zero-ens: cosine to each label's six descriptions (frozen encoder)
  zero-em         the same, each label's embedding moved to the unit mean of its descriptions'
                  mean and its EM_TOP nearest unlabelled texts, three rounds (prototype EM)
  single          contrastive-ens as shipped: tuned encoder, logistic regression on the rows
  head-self-K     the head refitted on the rows plus the K unlabelled texts per class it is
                  surest of, labelled by itself (the encoder unchanged)
  retune-self     one round of self-training: the encoder tuned afresh on the rows, descriptions
                  and the RETUNE_TOP surest unlabelled texts per class (pseudo-labelled by
                  `single`; RETUNE_PAIRS pairs), the head fitted on the rows
Results: bench/results/fewshot_unlabeled.json and a table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
HEAD_SELF_TOP = (250, 1000, 4000, 10000)
EM_TOP = 5000
RETUNE_TOP = 250
RETUNE_PAIRS = 2560


def surest(margin: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the k lowest and k highest margins (logit 1 - logit 0) and their labels 0 / 1."""
    order = np.argsort(margin)
    pick = np.concatenate([order[:k], order[::-1][:k]])
    return pick, (margin[pick] > 0).astype(np.int64)


def em_prototypes(prototypes: np.ndarray, unlabeled: np.ndarray, k: int, rounds: int = 3) -> np.ndarray:
    """(2, H) unit label embeddings moved towards the k unlabelled texts (unit rows) nearest each."""
    moved = prototypes
    for _ in range(rounds):
        cos = unlabeled @ moved.T                                   # (U, 2)
        pick, labels = surest(cos[:, 1] - cos[:, 0], k)
        means = np.stack([prototypes[c] + unlabeled[pick[labels == c]].mean(0) for c in (0, 1)])
        moved = means / np.linalg.norm(means, axis=1, keepdims=True)
    return moved


def main():
    import bench_fewshot as B
    import bench_fewshot_variants as V
    import torch

    from distill.fewshot import load_encoder
    from distill.fewshot_contrastive import fit_logistic_regression, make_pairs, tune_encoder
    from distill.fewshot_prompt import flatten_descriptions, read_label_descriptions, unit_centroids
    from distill.teacher import TeachConfig, default_teacher_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("DISTILL_DATA_DIR", ROOT.parent / "shared" / "data"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--unlabeled", type=int, default=20000)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    seeds = [int(s) for s in args.seeds.split(",")]
    train_texts, train_labels, drawn, held_out, evaluation = V.draws(args.data, seeds, 16)
    used = set(np.concatenate(list(drawn.values())).tolist()) | set(held_out)
    others = np.setdiff1d(np.arange(len(train_texts)), np.asarray(sorted(used)))
    unlabeled_idx = np.random.default_rng(7).choice(others, args.unlabeled, replace=False)
    unlabeled = [train_texts[i] for i in unlabeled_idx]
    described, owners = flatten_descriptions(read_label_descriptions(B.DESCRIPTIONS, B.LABEL_NAMES))
    source = default_teacher_path()
    encoder, tokenizer = load_encoder(source)
    pretrained = {name: value.detach().clone() for name, value in encoder.state_dict().items()}

    def embed(texts):
        return B.unit_embeddings(encoder, tokenizer, texts)

    def load(state):
        encoder.load_state_dict(state)
        encoder.eval()
        return embed(unlabeled), {name: embed(t) for name, (t, _) in evaluation.items()}

    rows = []

    def record(seed, variant, accuracy, **extra):
        rows.append({"seed": seed, "variant": variant, **accuracy, **extra})
        print(json.dumps(rows[-1]), flush=True)

    u, sets = load(pretrained)
    prototypes = unit_centroids(embed(described), owners, 2)
    zero = {"zero": V.head_accuracies(prototypes, np.zeros(2), sets, evaluation),
            "zero-em": V.head_accuracies(em_prototypes(prototypes, u, EM_TOP), np.zeros(2), sets, evaluation)}
    for seed in seeds:
        texts = [train_texts[i] for i in drawn[seed]] + described
        y = np.concatenate([train_labels[drawn[seed]], owners]).astype(np.int64)
        config = TeachConfig(**B.few_shot_settings("contrastive-ens", seed, len(drawn[seed])))
        for variant, accuracy in zero.items():
            record(seed, variant, accuracy)
        u, sets = load(V.tuned_state(source, tokenizer, texts, y, seed, config))
        x = embed(texts)
        weights, bias = fit_logistic_regression(x, y, 2)
        record(seed, "single", V.head_accuracies(weights, bias, sets, evaluation))
        margin = (u @ weights.T + bias) @ np.array([-1.0, 1.0])
        for k in HEAD_SELF_TOP:
            pick, pseudo = surest(margin, k)
            head = fit_logistic_regression(np.concatenate([x, u[pick]]), np.concatenate([y, pseudo]), 2)
            record(seed, f"head-self-{k}", V.head_accuracies(*head, sets, evaluation),
                   pseudo_label_accuracy=float((pseudo == train_labels[unlabeled_idx[pick]]).mean()))
        pick, pseudo = surest(margin, RETUNE_TOP)
        more_texts = texts + [unlabeled[i] for i in pick]
        more_y = np.concatenate([y, pseudo])
        encoder.load_state_dict(pretrained)
        tune_encoder(encoder, tokenizer, more_texts, make_pairs(more_y, RETUNE_PAIRS, seed),
                     replace(config, pairs=RETUNE_PAIRS))
        sets = {name: embed(t) for name, (t, _) in evaluation.items()}
        record(seed, "retune-self", V.head_accuracies(*fit_logistic_regression(embed(texts), y, 2), sets, evaluation),
               pseudo_label_accuracy=float((pseudo == train_labels[unlabeled_idx[pick]]).mean()))

    table = V.variant_table(rows, seeds)
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fewshot_unlabeled.json").write_text(json.dumps(
        {"table": table, "runs": rows, "unlabeled": args.unlabeled, "validation_rows": len(held_out),
         "head_self_top": HEAD_SELF_TOP, "em_top": EM_TOP, "retune_top": RETUNE_TOP,
         "retune_pairs": RETUNE_PAIRS}, indent=2) + "\n")


if __name__ == "__main__":
    main()
