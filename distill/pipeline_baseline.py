"""The classical baseline a user would try first: TF-IDF + linear SVM (scikit-learn, imported
lazily). Word 1-2 grams for space-separated text, character 1-3 grams for CJK text (and for
texts without a word of two or more characters), C = 0.5,
sublinear tf (as ../shared/bench/reference_tfidf.py). Trained on the teacher's training rows.

Saved as OUT/baseline/{model.pkl, baseline.json}. The pickle is this pipeline's own output and
is only ever loaded from there.
"""
from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np

CJK_SHARE_FOR_CHARS = 0.3   # above this share of CJK characters, n-grams of characters


def cjk_share(texts, sample: int = 2000) -> float:
    """Share of CJK characters among the non-space characters of (up to `sample`) texts."""
    from .vocab_extend import is_cjk

    chars = [c for text in list(texts)[:sample] for c in text if not c.isspace()]
    return sum(is_cjk(c) for c in chars) / len(chars) if chars else 0.0


def vectorizer_settings(texts, settings: dict) -> dict:
    analyzer = settings["analyzer"]
    if analyzer == "auto":
        analyzer = "char" if cjk_share(texts) > CJK_SHARE_FOR_CHARS else "word"
    if analyzer not in ("word", "char", "char_wb"):
        raise ValueError(f"baseline.analyzer must be auto, word, char or char_wb, not {analyzer!r}")
    ngrams = tuple(settings["ngram_range"] or ((1, 2) if analyzer == "word" else (1, 3)))
    return {"analyzer": analyzer, "ngram_range": ngrams, "sublinear_tf": settings["sublinear_tf"],
            "min_df": settings["min_df"], "max_features": settings["max_features"]}


def fit_baseline(texts, labels, settings: dict, seed: int = 0):
    """(fitted sklearn Pipeline, resolved vectorizer settings). Texts with no word of two or more
    characters (one letter, punctuation, emoji) give word n-grams nothing to count: with
    analyzer auto, character n-grams are used instead; with analyzer word, a clear error."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    vec = vectorizer_settings(texts, settings)
    model = make_pipeline(TfidfVectorizer(**vec), LinearSVC(C=settings["C"], random_state=seed))
    try:
        model.fit(list(texts), np.asarray(labels))
    except ValueError as error:
        if "empty vocabulary" not in str(error) or vec["analyzer"] != "word":
            raise
        if settings["analyzer"] != "auto":
            raise ValueError("baseline.analyzer = \"word\" finds no word of 2+ characters in the training "
                             "texts (single characters, punctuation, emoji): set baseline.analyzer = "
                             "\"char\" or run without the baseline (--no-baseline)") from None
        return fit_baseline(texts, labels, {**settings, "analyzer": "char", "ngram_range": None}, seed)
    return model, vec


def baseline_logits(model, texts, n_labels: int) -> np.ndarray:
    """SVM decision values as logits (n, n_labels): argmax = the SVM's prediction; for two
    classes [-s/2, s/2] from the single score s."""
    scores = np.asarray(model.decision_function(list(texts)), dtype=np.float32)
    if scores.ndim == 1:
        scores = np.stack([-scores / 2, scores / 2], axis=1)
    out = np.full((len(scores), n_labels), -1e4, dtype=np.float32)   # classes absent in training
    out[:, model.classes_] = scores
    return out


def parameter_count(model) -> int:
    svm = model[-1]
    return int(svm.coef_.size + np.size(svm.intercept_))


def load_baseline(directory):
    with open(Path(directory) / "model.pkl", "rb") as f:
        return pickle.load(f)


def run_baseline(train, dev, settings: dict, out, seed: int = 0) -> dict:
    """Fit on train (LabelledData) with the SVM seeded by `seed`, score dev, save atomically to
    out; returns baseline.json."""
    from .metrics import evaluate
    from .predict import softmax
    from .savedir import atomic_directory, write_json

    start = time.time()
    model, vec = fit_baseline(train.texts, train.labels, settings, seed)
    fit_seconds = time.time() - start
    logits = baseline_logits(model, dev.texts, len(train.label_names))
    report = {"command": "baseline", "model": "TF-IDF + LinearSVC", "settings": settings, "vectorizer": vec,
              "seed": seed,
              "labels": train.label_names, "train_rows": len(train), "train_sha256": train.sha256,
              "features": len(model[0].vocabulary_), "parameters": parameter_count(model),
              "fit_seconds": round(fit_seconds, 2),
              "final_eval": evaluate(np.asarray(dev.labels), softmax(logits), train.label_names)}
    with atomic_directory(out, force=True) as tmp:
        with open(Path(tmp) / "model.pkl", "wb") as f:
            pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
        write_json(Path(tmp) / "baseline.json", report)
    return report
