"""distill teach --few-shot prompt|contrastive|pet on tiny local models (distill/fewshot*.py)."""
import hashlib
import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tiny import make_reviews, make_tiny_model, write_csv

from distill.cli import main, summary
from distill.fewshot import FewShotError, per_class_sample
from distill.fewshot_contrastive import fit_logistic_regression, make_pairs
from distill.fewshot_head import linear_head_model, mean_pool, pooling_map
from distill.fewshot_prompt import (fit_scale, label_embeddings, leave_one_out_cosines,
                                    read_label_descriptions)
from distill.teacher import TeachConfig, teach


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _mean_pooled_with(encoder, tokenizer, texts):
    """Reference mean pooling: hidden states averaged over the attention mask, in numpy."""
    batch = tokenizer(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder.eval()(**batch).last_hidden_state.double().numpy()     # (n, T, H)
    mask = batch["attention_mask"].double().numpy()[..., None]                   # (n, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1)


def mean_pooled(model_dir, texts):
    from transformers import AutoModel, AutoTokenizer

    return _mean_pooled_with(AutoModel.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir), texts)


def saved_logits(model_dir, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch = tokenizer(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.double().numpy()


def prompt_logits(model_dir, descriptions, rows, scale, texts):
    """scale * cos(mean-pooled text, label embedding), the label embedding being the normalised
    mean of its (one) description's unit embedding and the normalised centroid of its rows'."""
    described = _unit(mean_pooled(str(model_dir), descriptions))
    embedded = _unit(mean_pooled(str(model_dir), rows.texts))
    centroids = _unit(np.stack([embedded[np.asarray(rows.labels) == k].mean(0) for k in range(len(descriptions))]))
    return scale * _unit(mean_pooled(str(model_dir), texts)) @ _unit(described + centroids).T


def invoke(args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fewshot")
    model = make_tiny_model(d / "encoder", seed=3)
    mlm = make_tiny_model(d / "mlm", mlm=True, seed=4)
    train = write_csv(d / "train.csv", make_reviews(40, seed=1))
    dev = write_csv(d / "dev.csv", make_reviews(24, seed=2))
    unlabeled = d / "unlabeled.txt"
    unlabeled.write_text("\n".join(t for t, _ in make_reviews(20, seed=3)) + "\n", encoding="utf-8")
    return {"dir": d, "model": model, "mlm": mlm, "train": train, "dev": dev, "unlabeled": unlabeled}


@pytest.fixture(scope="module")
def prompt_dir(files):
    """A few-shot prompt teacher (4 rows per class) written through the command line."""
    out = files["dir"] / "prompt"
    result = invoke(["teach", "--few-shot", "prompt", "--shots", 4, "--train", files["train"], "--eval",
                     files["dev"], "--model", files["model"], "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output
    return out


# ---------------------------------------------------------------- the mean-pooling head

def test_pooling_map_is_an_isometry_onto_zero_mean_vectors():
    rng = np.random.default_rng(0)
    H = 24
    gamma = rng.uniform(0.2, 1.5, H)
    gamma[3] = 0.0                                   # a dead coordinate, as in all-MiniLM-L6-v2
    beta = rng.normal(size=H)
    T, delta = pooling_map(gamma, beta)
    z = rng.normal(size=(50, H))
    z -= z.mean(1, keepdims=True)                    # LayerNorm outputs: zero-mean before the affine
    m = gamma * z + beta                             # (50, H) points of the plane
    safe = np.where(gamma == 0, 1e-30, gamma)
    n = (1 / safe) / np.linalg.norm(1 / safe)
    v = m - np.outer(m @ n, n)                       # in-plane part
    Tm = m @ T.T
    np.testing.assert_allclose(Tm.mean(1), 0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(Tm, axis=1), np.linalg.norm(v, axis=1), rtol=1e-9)
    a = rng.normal(size=(3, H))
    np.testing.assert_allclose((a @ T.T) @ Tm.T, a @ v.T, atol=1e-9)
    np.testing.assert_allclose(m @ n, delta, atol=1e-9)   # the dropped component is the constant delta
    assert pooling_map(np.ones(H), np.zeros(H))[1] == 0.0


def test_head_reproduces_cosine_scores_on_padded_batches(files):
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(files["model"]).eval()
    rng = np.random.default_rng(1)
    weights = 30 * _unit(rng.normal(size=(3, encoder.config.hidden_size)))
    bias = np.array([0.5, -1.0, 0.25])
    model, info = linear_head_model(encoder, weights, bias, ["a", "b", "c"])
    assert model.config.num_hidden_layers == encoder.config.num_hidden_layers + 1
    texts = ["a gripping film", "dull", "the plot was really very boring and the acting was flat too"]
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(files["model"])
    want = _unit(_mean_pooled_with(encoder, tokenizer, texts)) @ weights.T + bias
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        got = model(**batch).logits.double().numpy()
    np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max())
    assert info["plane_offset_delta"] == 0.0 and info["pooling"] == "mean"


def test_mean_pool_ignores_padding():
    hidden = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    out = mean_pool(hidden, mask)
    torch.testing.assert_close(out[0], hidden[0, :2].mean(0))
    torch.testing.assert_close(out[1], hidden[1].mean(0))


# ---------------------------------------------------------------- prompt

def test_prompt_teacher_reproduces_scale_times_cosine(files, prompt_dir):
    """The saved directory's logits = scale * cos(mean-pooled text, label embedding), the label
    embedding being the normalised mean of the description and the normalised centroid of the
    class's rows."""
    report = json.loads((prompt_dir / "training.json").read_text())
    shots = report["few_shot"]
    assert shots["method"] == "prompt" and report["data"]["train_class_counts"] == [4, 4]
    # the tiny encoder's cosines are all near 1: the fit ends at the grid's floor, and says so
    assert (shots["logit_scale"], shots["logit_scale_source"]) == (
        1.0, "fitted: leave-one-out likelihood of the labelled rows, at the edge of the grid 1..500")
    assert shots["label_descriptions"] == {"negative": ["This review is negative."],
                                           "positive": ["This review is positive."]}
    from distill.data import load_labelled
    rows = per_class_sample(load_labelled(files["train"]), 4, seed=42)
    texts = [t for t, _ in make_reviews(12, seed=9)]
    want = prompt_logits(files["model"], [d for d, in shots["label_descriptions"].values()], rows,
                         shots["logit_scale"], texts)
    np.testing.assert_allclose(saved_logits(prompt_dir, texts), want, atol=1e-5 * shots["logit_scale"])
    assert shots["head_check"]["max_abs_logit_diff"] < 1e-4
    config = json.loads((prompt_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["few_shot_head"] == "mean-pooling"       # tells a student to re-initialise the head
    assert report["final_eval"]["n"] == 24


def test_prompt_template_and_logit_scale_set_the_saved_logits(files, tmp_path):
    """--template words the label descriptions that are embedded; --logit-scale replaces the scale
    fitted on the rows (7 is not on the fitting grid, so a fitted scale cannot pass for it)."""
    out = tmp_path / "prompt"
    result = invoke(["teach", "--few-shot", "prompt", "--shots", 4, "--template", "a {label} film",
                     "--logit-scale", 7, "--train", files["train"], "--model", files["model"],
                     "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    from distill.data import load_labelled
    rows = per_class_sample(load_labelled(files["train"]), 4, seed=42)
    texts = [t for t, _ in make_reviews(12, seed=9)]
    want = prompt_logits(files["model"], ["a negative film", "a positive film"], rows, 7.0, texts)
    np.testing.assert_allclose(saved_logits(out, texts), want, atol=1e-5 * 7)
    assert "few-shot prompt: 8 labelled rows (4 per class); logit scale 7 (--logit-scale)\n" in result.output
    assert "samples/s" not in result.output                  # nothing was trained


def test_prompt_zero_shot_uses_descriptions_only(files, tmp_path):
    descriptions = tmp_path / "descriptions.tsv"
    descriptions.write_text("positive\t这是一条关于{label}的评论\nnegative\tawful boring film\n", encoding="utf-8")
    out = tmp_path / "zero"
    report = teach(TeachConfig(train=str(files["train"]), out=str(out), model=str(files["model"]),
                               few_shot="prompt", shots=0, label_descriptions=str(descriptions),
                               progress=False))
    shots = report["few_shot"]
    assert report["data"]["train_rows_used"] == 0 and shots["logit_scale"] == 50.0
    assert "warning" not in summary(report, str(out))     # every class is known by its description
    assert shots["label_descriptions"]["positive"] == ["这是一条关于positive的评论"]
    descs = _unit(mean_pooled(str(files["model"]), ["awful boring film", "这是一条关于positive的评论"]))
    texts = ["good fun", "a dull mess"]
    want = 50.0 * _unit(mean_pooled(str(files["model"]), texts)) @ descs.T
    np.testing.assert_allclose(saved_logits(out, texts), want, atol=5e-4)


def test_prompt_ensemble_averages_each_labels_descriptions(files, tmp_path):
    """Several lines for a label: its description embedding is the normalised mean of their unit
    embeddings (prompt ensembling), and every line is checked against the saved head."""
    descriptions = tmp_path / "ensemble.tsv"
    descriptions.write_text("negative\tawful boring film\npositive\ta {label} review\n"
                            "negative\tI hated it\npositive\tgreat fun\npositive\tloved it\n", encoding="utf-8")
    out = tmp_path / "ensemble"
    report = teach(TeachConfig(train=str(files["train"]), out=str(out), model=str(files["model"]),
                               few_shot="prompt", shots=0, label_descriptions=str(descriptions),
                               progress=False))
    shots = report["few_shot"]
    assert shots["label_descriptions"] == {"negative": ["awful boring film", "I hated it"],
                                           "positive": ["a positive review", "great fun", "loved it"]}
    assert shots["head_check"]["texts"] == 5 and shots["head_check"]["max_abs_logit_diff"] < 1e-4
    neg = _unit(mean_pooled(str(files["model"]), ["awful boring film", "I hated it"])).mean(0)
    pos = _unit(mean_pooled(str(files["model"]), ["a positive review", "great fun", "loved it"])).mean(0)
    centres = _unit(np.stack([neg, pos]))
    texts = ["good fun", "a dull mess", "it was fine"]
    want = 50.0 * _unit(mean_pooled(str(files["model"]), texts)) @ centres.T
    np.testing.assert_allclose(saved_logits(out, texts), want, atol=5e-4)
    single = _unit(mean_pooled(str(files["model"]), ["awful boring film", "a positive review"]))
    assert not np.allclose(want, 50.0 * _unit(mean_pooled(str(files["model"]), texts)) @ single.T, atol=1e-2)


def test_label_description_files(tmp_path):
    labels = ["negative", "positive"]
    plain = tmp_path / "plain.txt"
    plain.write_text("bad {label}\n\ngood\n", encoding="utf-8")
    assert read_label_descriptions(plain, labels) == [["bad negative"], ["good"]]
    several = tmp_path / "several.tsv"
    several.write_text("positive\tgood\nnegative\tbad {label}\npositive\t{label} review\n", encoding="utf-8")
    assert read_label_descriptions(several, labels) == [["bad negative"], ["good", "positive review"]]
    bom = tmp_path / "bom.tsv"                              # as Notepad and Excel save it
    bom.write_bytes(b"\xef\xbb\xbf" + several.read_bytes())
    assert read_label_descriptions(bom, labels) == [["bad negative"], ["good", "positive review"]]
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert read_label_descriptions(bom, labels) == [["bad negative"], ["good"]]
    for text, message in [("negative\tx\nneutral\ty\n", "unknown label 'neutral'"),
                          ("negative\tx\n", "no description for label(s) positive"),
                          ("negative\tx\npositive\ty\nnegative\t x\n", "line 3: 'negative' has the description 'x' twice"),
                          ("only one line\n", "1 description lines for 2 labels"),
                          ("negative\tawful\npositive great\n", "line 2: no tab, while other lines are "
                                                              "label<TAB>description")]:
        bad = tmp_path / "bad.txt"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(FewShotError, match=re.escape(message)):
            read_label_descriptions(bad, labels)


def test_prompt_refuses_numeric_labels_and_templates_without_label(files, tmp_path):
    numeric = write_csv(tmp_path / "numeric.csv", [(t, int(y == "positive")) for t, y in make_reviews(8)])
    base = dict(out=str(tmp_path / "o"), model=str(files["model"]), few_shot="prompt", progress=False)
    with pytest.raises(FewShotError, match="labels are numbers"):
        teach(TeachConfig(train=str(numeric), **base))
    with pytest.raises(FewShotError, match="no {label} placeholder"):
        teach(TeachConfig(train=str(files["train"]), template="This review is good.", **base))
    assert not (tmp_path / "o").exists()


def test_leave_one_out_cosines_match_recomputation():
    rng = np.random.default_rng(2)
    desc, rows = _unit(rng.normal(size=(2, 8))), _unit(rng.normal(size=(7, 8)))
    y = np.array([0, 1, 0, 1, 1, 0, 0])
    got = leave_one_out_cosines(desc, rows, y)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        centres = label_embeddings(desc, rows[keep], y[keep])
        np.testing.assert_allclose(got[i], rows[i] @ centres.T, atol=1e-12)


def test_fit_scale_recovers_the_temperature_of_sampled_labels():
    rng = np.random.default_rng(3)
    cos = rng.uniform(-0.2, 0.2, size=(6000, 3))
    for true_scale in (8.0, 40.0):
        p = np.exp(true_scale * cos)
        p /= p.sum(1, keepdims=True)
        y = np.array([rng.choice(3, p=row) for row in p])
        assert abs(fit_scale(cos, y) / true_scale - 1) < 0.15


def test_per_class_sample_is_seeded_and_balanced(files):
    from distill.data import load_labelled
    data = load_labelled(files["train"])
    a, b, c = (per_class_sample(data, 5, seed) for seed in (1, 1, 2))
    assert a.counts() == [5, 5] and a.texts == b.texts and a.texts != c.texts
    with pytest.raises(FewShotError, match="has only 20 rows"):
        per_class_sample(data, 21, 0)


# ---------------------------------------------------------------- contrastive

def test_pairs_counts_balance_and_no_self_pairs():
    y = np.array([0] * 5 + [1] * 3 + [2] * 1)
    pairs = make_pairs(y, 101, seed=7)
    assert pairs.shape == (101, 3)
    assert pairs[:, 2].sum() == 50                                      # 50 similar, 51 dissimilar
    assert (pairs[:, 0] != pairs[:, 1]).all()
    np.testing.assert_array_equal(pairs[:, 2], (y[pairs[:, 0]] == y[pairs[:, 1]]).astype(int))
    assert not (y[pairs[:, 0]] == 2)[pairs[:, 2] == 1].any()             # a lone row has no partner
    np.testing.assert_array_equal(pairs, make_pairs(y, 101, seed=7))
    assert not np.array_equal(pairs, make_pairs(y, 101, seed=8))
    with pytest.raises(FewShotError, match="at least 2 rows"):
        make_pairs(np.array([0, 1, 2]), 10, 0)
    with pytest.raises(FewShotError, match="at least 2 classes"):
        make_pairs(np.array([0, 0, 0]), 10, 0)


def test_logistic_regression_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(4)
    x = _unit(rng.normal(size=(40, 6)) + np.repeat(np.eye(3, 6) * 2, [14, 13, 13], axis=0))
    y = np.repeat([0, 1, 2], [14, 13, 13])
    W, b = fit_logistic_regression(x, y, 3, c=1.0)
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000).fit(x, y)
    ours = np.exp(x @ W.T + b)
    np.testing.assert_allclose(ours / ours.sum(1, keepdims=True), reference.predict_proba(x), atol=1e-5)


def test_contrastive_teacher_end_to_end(files, tmp_path):
    from transformers import AutoModel

    out = tmp_path / "contrastive"
    result = invoke(["teach", "--few-shot", "contrastive", "--shots", 6, "--pairs", 48, "--batch-size", 8,
                     "--lr", 1e-3, "--train", files["train"], "--eval", files["dev"],
                     "--model", files["model"], "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "training.json").read_text())
    shots = report["few_shot"]
    assert shots["pairs"] == {"total": 48, "similar": 24, "dissimilar": 24, "seed": 42}
    assert len(report["epochs"]) == 1 and report["epochs"][0]["step"] == 6
    before = AutoModel.from_pretrained(files["model"]).state_dict()
    from transformers import AutoModelForSequenceClassification
    saved = AutoModelForSequenceClassification.from_pretrained(out)
    tuned = saved.bert.state_dict()
    assert not torch.equal(before["encoder.layer.0.attention.self.query.weight"],
                           tuned["encoder.layer.0.attention.self.query.weight"])
    # the head: logistic regression over the tuned encoder's normalised mean-pooled embeddings
    from distill.data import load_labelled
    rows = per_class_sample(load_labelled(files["train"]), 6, seed=42)
    tuned_encoder = AutoModel.from_config(AutoModel.from_pretrained(files["model"]).config)
    tuned_encoder.load_state_dict({k: v for k, v in tuned.items() if not k.startswith("encoder.layer.2.")},
                                  strict=False)
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(out)
    descriptions = ["This review is negative.", "This review is positive."]   # join the rows
    assert shots["label_descriptions"] == {"negative": descriptions[:1], "positive": descriptions[1:]}
    x = _unit(_mean_pooled_with(tuned_encoder, tokenizer, rows.texts + descriptions))
    W, b = fit_logistic_regression(x, np.concatenate([rows.labels, [0, 1]]), 2)
    texts = [t for t, _ in make_reviews(10, seed=11)]
    want = _unit(_mean_pooled_with(tuned_encoder, tokenizer, texts)) @ W.T + b
    np.testing.assert_allclose(saved_logits(out, texts), want, atol=1e-4)


def test_contrastive_every_description_joins_its_label(files, tmp_path):
    descriptions = tmp_path / "ensemble.tsv"
    descriptions.write_text("negative\tawful boring film\npositive\tgreat fun\nnegative\tI hated it\n",
                            encoding="utf-8")
    out = tmp_path / "contrastive"
    result = invoke(["teach", "--few-shot", "contrastive", "--shots", 3, "--pairs", 8, "--batch-size", 8,
                     "--label-descriptions", descriptions, "--train", files["train"],
                     "--model", files["model"], "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    shots = json.loads((out / "training.json").read_text())["few_shot"]
    assert shots["label_descriptions"] == {"negative": ["awful boring film", "I hated it"], "positive": ["great fun"]}
    assert shots["head_check"]["texts"] == 6 + 3     # the rows, then every description as an example


@pytest.mark.parametrize("epochs, steps", [(0.5, [1]), (2.5, [2, 4, 5])], ids=["half-pass", "2.5-passes"])
def test_contrastive_epochs_and_template_drive_the_tuning(files, tmp_path, monkeypatch, epochs, steps):
    """--contrastive-epochs: passes over the pairs, 16 pairs in batches of 8 being 2 optimisation
    steps a pass (the last pass cut short); --template: the descriptions that join the 6 rows,
    in the tuning and in the head."""
    import distill.fewshot_contrastive as contrastive

    seen = {"steps": 0}

    def tune_spy(encoder, tokenizer, texts, *args, **kwargs):
        seen["tuned"] = list(texts)
        return real_tune(encoder, tokenizer, texts, *args, **kwargs)

    def loss_spy(*args, **kwargs):                  # one call per optimisation step
        seen["steps"] += 1
        return real_loss(*args, **kwargs)

    def embed_spy(encoder, tokenizer, texts, *args, **kwargs):
        seen["embedded"] = list(texts)
        return real_embed(encoder, tokenizer, texts, *args, **kwargs)

    real_tune, real_loss, real_embed = contrastive.tune_encoder, contrastive.cosine_pair_loss, contrastive.embed_texts
    monkeypatch.setattr(contrastive, "tune_encoder", tune_spy)
    monkeypatch.setattr(contrastive, "cosine_pair_loss", loss_spy)
    monkeypatch.setattr(contrastive, "embed_texts", embed_spy)
    out = tmp_path / "contrastive"
    result = invoke(["teach", "--few-shot", "contrastive", "--shots", 3, "--pairs", 16, "--batch-size", 8,
                     "--contrastive-epochs", epochs, "--template", "a {label} film",
                     "--train", files["train"], "--model", files["model"], "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "training.json").read_text())
    assert seen["steps"] == steps[-1]
    assert [e["step"] for e in report["epochs"]] == steps
    train_accuracy = report["few_shot"]["classifier"]["train_accuracy"]
    assert (f"few-shot contrastive: 6 labelled rows (3 per class); 16 pairs (8 similar) x {epochs:g} epoch(s), "
            f"head train accuracy {train_accuracy:.4f}") in result.output
    from distill.data import load_labelled
    rows = per_class_sample(load_labelled(files["train"]), 3, seed=42)
    assert seen["tuned"] == seen["embedded"] == rows.texts + ["a negative film", "a positive film"]


# ---------------------------------------------------------------- pet

@pytest.fixture(scope="module")
def mlm_parts(files):
    from distill.fewshot_pet import load_masked_lm
    return load_masked_lm(str(files["mlm"]))


def test_verbalizer_maps_single_tokens_and_rejects_the_rest(mlm_parts):
    from distill.fewshot_pet import parse_verbalizer

    _, tokenizer = mlm_parts
    labels = ["negative", "positive"]
    ids = parse_verbalizer("positive=great, negative=Terrible", labels, tokenizer)
    assert ids == [tokenizer.convert_tokens_to_ids("terrible"), tokenizer.convert_tokens_to_ids("great")]
    for spec, message in [("positive=wonderfully,negative=bad", r"'wonderfully' is 2 tokens \(wonderful ##ly\)"),
                          ("positive=great", "no word for label.s. negative"),
                          ("positive=great,negative=bad,neutral=ok", "unknown label 'neutral'"),
                          ("positive=great,negative=great", "share a verbalisation token"),
                          ("positive great", "is not LABEL=WORD"),
                          ("positive=great,negative=[SEP]", "'\\[SEP\\]' is a special token"),
                          (None, "needs --verbalizer")]:
        with pytest.raises(FewShotError, match=message):
            parse_verbalizer(spec, labels, tokenizer)


def test_pet_needs_a_masked_language_model_head(files, tmp_path):
    from distill.fewshot_pet import load_masked_lm

    with pytest.raises(FewShotError, match="no masked-language-model head.*cls.predictions"):
        load_masked_lm(str(files["model"]))             # a sequence classifier: no MLM weights
    from distill.teacher import default_teacher_path
    with pytest.raises(FewShotError, match="no masked-language-model head.*all-MiniLM-L6-v2 is a sentence encoder"):
        load_masked_lm(default_teacher_path())           # the packaged default teacher: a bare BertModel
    with pytest.raises(FewShotError, match="no masked-language-model head"):
        teach(TeachConfig(train=str(files["train"]), out=str(tmp_path / "o"), model=str(files["model"]),
                          few_shot="pet", verbalizer="positive=great,negative=bad", progress=False))
    assert not (tmp_path / "o").exists()


def test_cloze_encoding_truncates_the_text_not_the_pattern(mlm_parts):
    from distill.fewshot_pet import encode_cloze

    _, tokenizer = mlm_parts
    long_text = " ".join(["very"] * 50)
    rows, positions = encode_cloze(tokenizer, ["good film", long_text], "{text} It was [MASK].", 16)
    assert tokenizer.convert_ids_to_tokens(rows[0]["input_ids"]) == \
        ["[CLS]", "good", "film", "it", "was", "[MASK]", ".", "[SEP]"]
    assert len(rows[1]["input_ids"]) == 16
    assert [rows[i]["input_ids"][p] for i, p in enumerate(positions)] == [tokenizer.mask_token_id] * 2
    rows, positions = encode_cloze(tokenizer, [long_text], "[MASK] : {text}", 10)
    assert positions == [1] and rows[0]["input_ids"][-1] == tokenizer.sep_token_id
    for template, message in [("It was [MASK].", "exactly once"), ("{text} good", r"\[MASK\] exactly once"),
                              ("{text} {label}? [MASK]", "belongs to prompt and contrastive templates")]:
        with pytest.raises(FewShotError, match=message):
            encode_cloze(tokenizer, ["x"], template, 16)


@pytest.mark.parametrize("template", [None, "The story: {text} In the end it was [MASK]!"],
                         ids=["default-pattern", "own-pattern"])
def test_pet_teacher_end_to_end(files, tmp_path, monkeypatch, template):
    """With the labelled files' text in a column named `sentence` (as SST-2's), the unlabelled
    .txt file is still one text per line. The final classifier is trained on the labelled rows
    and the unlabelled texts (those with KD only), against the cloze model's own scores, for
    --final-epochs. Every text reaches the cloze model wrapped in --template (default
    "{text} It was [MASK].")."""
    import distill.fewshot_pet as pet
    from distill.data import DataOptions

    seen = {}

    def cloze_spy(model, tokenizer, rows, *args, **kwargs):
        seen.setdefault("fed", []).append([row["input_ids"] for row in rows])
        seen.setdefault("cloze", []).append(real_cloze(model, tokenizer, rows, *args, **kwargs))
        return seen["cloze"][-1]

    def final_spy(model, tokenizer, texts, labels, soft, dev, config):
        seen["final"] = (list(texts), list(labels), soft)
        return real_final(model, tokenizer, texts, labels, soft, dev, config)

    real_cloze, real_final = pet.cloze_predict, pet.train_final_classifier
    monkeypatch.setattr(pet, "cloze_predict", cloze_spy)
    monkeypatch.setattr(pet, "train_final_classifier", final_spy)
    out = tmp_path / "pet"
    unlabeled_file = tmp_path / "unlabeled.txt"                     # one bad line, skipped and counted
    unlabeled_file.write_bytes(files["unlabeled"].read_bytes() + b"\xff not UTF-8\n")
    train = write_csv(tmp_path / "train.csv", make_reviews(40, seed=1), header=("sentence", "label"))
    dev = write_csv(tmp_path / "dev.csv", make_reviews(24, seed=2), header=("sentence", "label"))
    report = teach(TeachConfig(train=str(train), eval=str(dev), out=str(out),
                               data=DataOptions(text_column="sentence", skip_bad_rows=True),
                               model=str(files["mlm"]), few_shot="pet", shots=4, epochs=2, final_epochs=1,
                               batch_size=8, verbalizer="positive=great,negative=bad", template=template,
                               unlabeled=str(unlabeled_file), progress=False))
    shots = report["few_shot"]
    assert shots["verbalizer"] == {"negative": "bad", "positive": "great"}
    assert shots["unlabeled"]["rows"] == 20 and shots["final_classifier"]["texts"] == 28
    assert shots["unlabeled"]["sha256"] == hashlib.sha256(unlabeled_file.read_bytes()).hexdigest()
    assert shots["unlabeled"]["skipped"] == {"invalid UTF-8": 1}
    assert f"unlabeled ({unlabeled_file}): skipped 1 row: 1 invalid UTF-8" in summary(report, str(out))
    assert len(shots["cloze"]["epochs"]) == 2 and shots["cloze"]["eval"]["n"] == 24
    assert report["final_eval"]["n"] == 24
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert saved_logits(out, ["good fun"]).shape == (1, 2)
    assert not (tmp_path / "pet.checkpoints").exists()
    texts, labels, soft = seen["final"]
    unlabeled = files["unlabeled"].read_text(encoding="utf-8").splitlines()
    assert len(texts) == 28 and texts[8:] == unlabeled
    assert labels[8:] == [-100] * 20 and set(labels[:8]) == {0, 1}
    assert len(seen["cloze"]) == 2 and seen["cloze"][0].shape == (24, 2)      # dev, then the final texts
    np.testing.assert_array_equal(soft, seen["cloze"][1])
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(files["mlm"])
    pattern = template or "{text} It was [MASK]."
    dev_texts = [t for t, _ in make_reviews(24, seed=2)]
    assert seen["fed"] == [[tokenizer(pattern.replace("{text}", t))["input_ids"] for t in some]
                           for some in (dev_texts, texts)]
    assert (f"few-shot pet: 8 labelled rows (4 per class); pattern {pattern!r}, cloze model accuracy "
            f"{shots['cloze']['eval']['accuracy']:.4f}") in summary(report, str(out))
    # --final-epochs 1: one pass over the 28 texts in batches of 8 (the default 3 would be 12 steps)
    assert [(e["epoch"], e["step"]) for e in report["epochs"]] == [(1, 4)]


# ---------------------------------------------------------------- options and export

@pytest.mark.parametrize("extra, message", [
    (["--few-shot", "prompt", "--pairs", "10"], "--pairs applies to --few-shot contrastive"),
    (["--few-shot", "pet", "--label-descriptions", __file__], "--label-descriptions applies to --few-shot prompt or contrastive"),
    (["--few-shot", "contrastive", "--shots", "0"], "zero-shot"),
    (["--few-shot", "prompt", "--freeze-encoder"], "--freeze-encoder: not used by --few-shot\n"),
    (["--few-shot", "prompt", "--max-train-samples", "4"],
     "--max-train-samples: not used by --few-shot (use --shots to pick rows per class)"),
    (["--few-shot", "contrastive", "--verbalizer", "a=b"], "--verbalizer applies to --few-shot pet"),
    (["--few-shot", "contrastive", "--unlabeled", __file__],
     "--unlabeled applies to --few-shot pet, not contrastive; a contrastive teacher learns from unlabelled "
     "texts through `distill student --teacher DIR --unlabeled FILE`"),
    (["--few-shot", "contrastive", "--epochs", "5"], "--epochs applies to --few-shot pet, not contrastive"),
    (["--few-shot", "prompt", "--lr", "1e-3"], "--lr applies to --few-shot contrastive or pet, not prompt"),
    (["--few-shot", "prompt", "--epochs", "3"], "--epochs applies to --few-shot pet, not prompt"),     # the default
    (["--few-shot", "contrastive", "--metric", "accuracy"], "--metric: not used by --few-shot"),     # the default
    (["--few-shot", "prompt", "--contrastive-epochs", "2"], "--contrastive-epochs applies to --few-shot contrastive"),
    (["--few-shot", "contrastive", "--final-epochs", "2"], "--final-epochs applies to --few-shot pet"),
    (["--few-shot", "pet", "--dropout", "0.2", "--extend-vocab-words", "3"],
     "--dropout, --extend-vocab-words: not used by --few-shot"),
    (["--few-shot", "prompt", "--template", "{label}!", "--label-descriptions", __file__],
     "--template and --label-descriptions both describe the labels: give one"),
    (["--few-shot", "contrastive", "--eval-batch-size", "0"], "--eval-batch-size must be at least 1, got 0"),
    (["--few-shot", "contrastive", "--warmup", "-1"], "--warmup must be at least 0, got -1.0"),
    (["--few-shot", "contrastive", "--contrastive-epochs", "0"], "--contrastive-epochs must be > 0, got 0.0"),
    (["--few-shot", "prompt", "--max-length", "3"], "--max-length must be at least 4, got 3"),
    (["--few-shot", "prompt", "--max-length", "129"], "--max-length 129 is longer than"),
    (["--few-shot", "prompt", "--model", "/nonexistent/encoder"], "--model /nonexistent/encoder: no such directory"),
    (["--few-shot", "prompt", "--template", "{text} is {label}"], "{text} belongs to pet patterns"),
])
def test_conflicting_options_fail_before_any_work(files, tmp_path, extra, message):
    result = CliRunner().invoke(main, ["teach", "--train", str(files["train"]), "--model", str(files["model"]),
                                       "--out", str(tmp_path / "o"), *extra])
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "o").exists()


def test_prompt_teacher_exports_and_runs_in_the_numpy_runtime(files, prompt_dir, tmp_path):
    from export.cli import ExportSettings, export_bundle
    from runtime import Classifier

    bundle = tmp_path / "bundle"
    report = export_bundle(ExportSettings(model_dir=str(prompt_dir), out=str(bundle), samples=8),
                           log=lambda message: None)
    assert report["parity"]["max_abs_logit_diff"] <= 1e-4
    texts = [t for t, _ in make_reviews(8, seed=5)] + ["ok"]
    torch_probs = saved_logits(prompt_dir, texts)
    torch_probs = np.exp(torch_probs - torch_probs.max(1, keepdims=True))
    torch_probs /= torch_probs.sum(1, keepdims=True)
    np.testing.assert_allclose(Classifier.load(bundle).predict_proba(texts), torch_probs, atol=1e-4)
