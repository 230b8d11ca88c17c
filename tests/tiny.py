"""Tiny local BERT models and data files for tests: nothing is downloaded.

`make_tiny_model(dir)` writes a Hugging Face `save_pretrained` directory (config with
id2label, model.safetensors, tokenizer files with a generated uncased vocabulary) of a
randomly initialised `BertForSequenceClassification` a few hundred KB in size.
"""
from __future__ import annotations

import csv
import random
import string
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = """a an the and or but not no very really quite so too this that it is was were be
been film movie story plot acting actor actors cast director script scene scenes music
good great fine best better love loved lovely wonderful brilliant gripping fun funny
charming moving beautiful smart clever fresh bad worse worst awful boring dull lifeless
terrible weak mess poor flat tedious slow ok okay average decent mixed plain fair
ordinary middle some parts of in on at to for with by from as too much many little
i you he she we they his her their my your one two three time work works end ending""".split()
CJK = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严龙飞""")


def write_vocab(path: Path, extra_words: list[str] | None = None) -> list[str]:
    """An uncased WordPiece vocabulary: specials, single characters (and their ## forms),
    common words and a few hundred CJK characters, so no test text falls to [UNK]."""
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = SPECIAL + chars + ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab += WORDS + ["##s", "##ed", "##ing", "##ly", "##er"] + CJK + (extra_words or [])
    seen, unique = set(), []
    for token in vocab:
        if token not in seen:
            seen.add(token)
            unique.append(token)
    path.write_text("\n".join(unique) + "\n", encoding="utf-8")
    return unique


def make_tiny_model(out_dir, labels=("negative", "positive"), layers: int = 2, hidden: int = 32,
                    heads: int = 2, intermediate: int = 64, max_positions: int = 128, seed: int = 0,
                    mlm: bool = False) -> Path:
    """Save a randomly initialised tiny BERT sequence classifier (or MLM model) to out_dir."""
    import torch
    from transformers import (BertConfig, BertForMaskedLM, BertForSequenceClassification,
                              BertTokenizer)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(out / "vocab.txt")
    tokenizer = BertTokenizer(str(out / "vocab.txt"), do_lower_case=True)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate,
                        max_position_embeddings=max_positions, type_vocab_size=2,
                        id2label=dict(enumerate(labels)),
                        label2id={name: i for i, name in enumerate(labels)})
    torch.manual_seed(seed)
    model = (BertForMaskedLM if mlm else BertForSequenceClassification)(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


POSITIVE = "good great fine best love lovely wonderful brilliant gripping fun funny charming moving beautiful smart".split()
NEGATIVE = "bad worse worst awful boring dull lifeless terrible weak mess poor flat tedious slow".split()
NEUTRAL = "ok okay average decent mixed plain fair ordinary middle".split()
FILLER = "the film movie story plot acting cast script music was is very really quite".split()


def review(rng: random.Random, words: list[str]) -> str:
    picked = rng.sample(FILLER, 3) + rng.sample(words, 2)
    rng.shuffle(picked)
    return " ".join(picked)


def make_reviews(n: int = 60, seed: int = 0, classes=("negative", "positive")) -> list[tuple[str, str]]:
    """Synthetic, learnable reviews: the sentiment word decides the label."""
    pools = {"negative": NEGATIVE, "positive": POSITIVE, "neutral": NEUTRAL}
    rng = random.Random(seed)
    return [(review(rng, pools[label]), label) for label in (classes[i % len(classes)] for i in range(n))]


def write_csv(path: Path, rows, header=("text", "label"), delimiter=",") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path
