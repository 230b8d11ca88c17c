"""Variants of the 16-row `contrastive-ens` teacher (bench_fewshot.py) that did not reach 78%.

usage: python bench/bench_fewshot_variants.py [--data DIR] [--shots 16] [--seeds 0,1,2]

For each seed, the rows of bench_fewshot.py (same draw) and the six descriptions per label of
bench/sst2_label_descriptions.tsv; the encoder is tuned as `distill teach --few-shot contrastive`
does (its TeachConfig defaults: lr 5e-5, batch 32, 1 epoch; bench_fewshot.py's pairs,
1,280 at 16 rows per class) three times, with pair seeds s, s+100, s+200:
  single        tuning with pair seed s and the logistic-regression head (C=1): the shipped method
  single-mean   mean accuracy of the three tunings
  soup3         uniform weight average of the three tuned encoders (Wortsman et al. 2022), new head
  wise0.5       WiSE-FT (Wortsman et al. 2022): half the tuned weights, half the pretrained, new head
  head-C10      the single tuning with a weaker-regularised head (C=10)
  head-centroid the single tuning, classified by cosine to each label's unit centroid (rows and
                descriptions alike), as `--few-shot prompt` does
Every variant is scored on the full dev set and on VALIDATION held-out training rows of at least
10 words (not among any seed's drawn rows; seeded), so a choice could be made without dev.
Results: bench/results/fewshot_variants.json and a table on stdout.
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
VALIDATION = 2000
PAIR_SEED_OFFSETS = (0, 100, 200)


def tuned_state(source, tokenizer, texts, y, pairs_seed, config):
    from distill.fewshot import load_encoder
    from distill.fewshot_contrastive import make_pairs, tune_encoder

    encoder, _ = load_encoder(source)
    config = replace(config, seed=pairs_seed)
    tune_encoder(encoder, tokenizer, texts, make_pairs(y, config.pairs, pairs_seed), config)
    return {name: value.detach().clone() for name, value in encoder.state_dict().items()}


def mixed(states, weights):
    """sum_i w_i * state_i, parameter by parameter (all from one architecture)."""
    return {name: sum(w * s[name].float() for s, w in zip(states, weights)).to(states[0][name].dtype)
            for name in states[0]}


def embedder(source, tokenizer, texts, evaluation):
    """Callable(state) -> (rows' embeddings, {set name: embeddings}), normalised, from the encoder
    holding `state`; each state is embedded once, whatever heads are then fitted on it."""
    from bench_fewshot import unit_embeddings
    from distill.fewshot import load_encoder

    encoder, _ = load_encoder(source)

    def embed(state):
        encoder.load_state_dict(state)
        encoder.eval()
        one = lambda t: unit_embeddings(encoder, tokenizer, t)
        return one(texts), {name: one(t) for name, (t, _) in evaluation.items()}

    return embed


def accuracies(embedded, y, evaluation, head="lr", c=1.0) -> dict:
    """{set name: accuracy} of a head fitted on the rows' embeddings: logistic regression (C=c)
    or the nearest unit centroid."""
    from distill.fewshot_contrastive import fit_logistic_regression
    from distill.fewshot_prompt import unit_centroids

    x, sets = embedded
    W, b = fit_logistic_regression(x, y, 2, c=c) if head == "lr" else (unit_centroids(x, y, 2), np.zeros(2))
    return head_accuracies(W, b, sets, evaluation)


def head_accuracies(weights, bias, sets, evaluation) -> dict:
    """{set name: accuracy} of the linear head x @ weights.T + bias on each set's embeddings."""
    return {name: float(((sets[name] @ weights.T + bias).argmax(1) == labels).mean())
            for name, (_, labels) in evaluation.items()}


def draws(data, seeds, shots: int):
    """SST-2 training texts and labels, each seed's drawn rows (bench_fewshot.py's draw), the
    VALIDATION held-out rows (at least 10 words, drawn by none of the seeds; seeded) and
    {"dev": (texts, labels), "validation": (texts, labels)}."""
    import bench_fewshot as B

    train_texts, train_labels = B.read_tsv(Path(data) / "sst2" / "train.tsv")
    dev_texts, dev_labels = B.read_tsv(Path(data) / "sst2" / "dev.tsv")
    pool = np.flatnonzero([len(t.split()) >= 10 for t in train_texts])
    drawn = {s: B.draw(train_labels, pool, shots, s) for s in seeds}
    used = set(np.concatenate(list(drawn.values())).tolist())
    held_out = [i for i in np.random.default_rng(12345).permutation(pool) if i not in used][:VALIDATION]
    evaluation = {"dev": (dev_texts, dev_labels),
                  "validation": ([train_texts[i] for i in held_out], train_labels[held_out])}
    return train_texts, train_labels, drawn, held_out, evaluation


def variant_table(rows: list[dict], seeds) -> str:
    """Markdown: one line per variant, dev / val accuracy per seed and their means, in %."""
    lines = ["| variant | " + " | ".join(f"seed {s} dev / val" for s in seeds) + " | mean dev | mean val |",
             "|---|" + "---|" * (len(seeds) + 2)]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [next(r for r in rows if r["variant"] == variant and r["seed"] == s) for s in seeds]
        cells = [f"{100 * r['dev']:.2f} / {100 * r['validation']:.2f}" for r in mine]
        means = [100 * np.mean([r[k] for r in mine]) for k in ("dev", "validation")]
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {means[0]:.2f} | {means[1]:.2f} |")
    return "\n".join(lines)


def main():
    import bench_fewshot as B
    import torch

    from distill.fewshot import load_encoder
    from distill.fewshot_prompt import flatten_descriptions, read_label_descriptions
    from distill.teacher import TeachConfig, default_teacher_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("DISTILL_DATA_DIR", ROOT.parent / "shared" / "data"))
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    seeds = [int(s) for s in args.seeds.split(",")]
    train_texts, train_labels, drawn, held_out, evaluation = draws(args.data, seeds, args.shots)
    descriptions = read_label_descriptions(B.DESCRIPTIONS, B.LABEL_NAMES)
    described, owners = flatten_descriptions(descriptions)
    source = default_teacher_path()
    pretrained, tokenizer = load_encoder(source)
    pretrained = {name: value.detach().clone() for name, value in pretrained.state_dict().items()}

    rows = []
    for seed in seeds:
        texts = [train_texts[i] for i in drawn[seed]] + described
        y = np.concatenate([train_labels[drawn[seed]], owners]).astype(np.int64)
        # `distill teach --few-shot contrastive` defaults, with the pairs bench_fewshot.py gives
        config = TeachConfig(**B.few_shot_settings("contrastive-ens", seed, len(drawn[seed])))
        states = [tuned_state(source, tokenizer, texts, y, seed + k, config) for k in PAIR_SEED_OFFSETS]
        embed = embedder(source, tokenizer, texts, evaluation)
        first = embed(states[0])
        singles = [accuracies(e, y, evaluation) for e in [first] + [embed(s) for s in states[1:]]]
        results = {"single": singles[0],
                   "single-mean": {k: float(np.mean([s[k] for s in singles])) for k in evaluation},
                   "soup3": accuracies(embed(mixed(states, [1 / 3] * 3)), y, evaluation),
                   "wise0.5": accuracies(embed(mixed([states[0], pretrained], [0.5, 0.5])), y, evaluation),
                   "head-C10": accuracies(first, y, evaluation, c=10.0),
                   "head-centroid": accuracies(first, y, evaluation, head="centroid")}
        for variant, accuracy in results.items():
            rows.append({"seed": seed, "variant": variant, **accuracy})
            print(json.dumps(rows[-1]), flush=True)

    table = variant_table(rows, seeds)
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fewshot_variants.json").write_text(json.dumps({"table": table, "runs": rows, "shots": args.shots,
                                                           "validation_rows": len(held_out)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
