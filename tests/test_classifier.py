"""runtime.Classifier and `python -m runtime` on tiny bundles made by the real export.

The reference is what a user would otherwise run: Hugging Face's Python BERT tokenizer and
onnxruntime, one text at a time (no padding), on the same bundle.
"""
from __future__ import annotations

import atexit
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from runtime import BundleError, Classifier

ROOT = Path(__file__).resolve().parent.parent
LABELS = ("negative", "neutral", "positive")
MAX_LENGTH = 24
_built: dict = {}

TEXTS = [
    "a gripping film", "dull and lifeless", "", "the plot is a mess but the music is lovely",
    "Café naïve RÉSUMÉ", "中文 电影 很好", "!!!", "ok", "the the the",
    " ".join(["boring"] * 200),                         # far past max_length: truncated
    "this movie was brilliant , smart and funny", "worst acting , tedious script , weak cast",
    "A", "a gripping film",                             # a repeated text
]


def sharp_tiny_model(out_dir: Path) -> Path:
    """make_tiny_model with a 50x classifier head, so texts get clearly different probabilities."""
    import torch
    from tiny import make_tiny_model
    from transformers import AutoModelForSequenceClassification

    model_dir = make_tiny_model(out_dir, labels=LABELS, max_positions=64)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        model.classifier.weight.mul_(50.0)
        model.classifier.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
    model.save_pretrained(model_dir)
    return model_dir


def tiny_bundle(int8: bool = False) -> Path:
    """A bundle exported by `export` from the sharp tiny model; built once per test process."""
    if int8 not in _built:
        from export.cli import ExportSettings, export_bundle

        if "root" not in _built:
            _built["root"] = Path(tempfile.mkdtemp(prefix="runtime-tests-"))
            atexit.register(shutil.rmtree, _built["root"], True)
            _built["model"] = sharp_tiny_model(_built["root"] / "model")
        out = _built["root"] / ("bundle-int8" if int8 else "bundle-fp32")
        export_bundle(ExportSettings(model_dir=str(_built["model"]), out=str(out), int8=int8,
                                     max_length=MAX_LENGTH, samples=8), log=lambda message: None)
        _built[int8] = out
    return _built[int8]


def reference_logits(bundle: Path, texts, session=None) -> np.ndarray:
    """HF Python tokenizer + onnxruntime (or the given session), one unpadded text at a time."""
    import onnxruntime as ort
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    config = json.loads((bundle / "runtime.json").read_text())
    tok = BertTokenizerLegacy(str(bundle / "vocab.txt"), do_lower_case=config["tokenizer"]["lowercase"])
    if session is None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(bundle / "model.onnx"), options,
                                       providers=["CPUExecutionProvider"])
    rows = []
    for text in texts:
        enc = tok([text], truncation=True, max_length=config["max_length"], return_tensors="np",
                  return_token_type_ids=True, return_attention_mask=True)
        feeds = {name: enc[name].astype(np.int64) for name in config["inputs"]}
        rows.append(session.run([config["output"]], feeds)[0][0])
    return np.array(rows, dtype=np.float32)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Recording:
    """Wraps a session and records the feeds of every run."""

    def __init__(self, session):
        self.session, self.feeds = session, []

    def run(self, output_names, feeds):
        self.feeds.append({name: array.copy() for name, array in feeds.items()})
        return self.session.run(output_names, feeds)


@pytest.fixture(scope="module")
def fp32_bundle():
    return tiny_bundle(int8=False)


@pytest.fixture(scope="module")
def int8_bundle():
    return tiny_bundle(int8=True)


@pytest.fixture
def clf(fp32_bundle):
    return Classifier.load(fp32_bundle)


# -- agreement with onnxruntime ------------------------------------------------------------

def test_fp32_matches_onnxruntime(fp32_bundle):
    clf = Classifier.load(fp32_bundle, batch_size=4)
    want = reference_logits(fp32_bundle, TEXTS)
    proba = clf.predict_proba(TEXTS)
    assert proba.dtype == np.float32 and proba.shape == (len(TEXTS), len(LABELS))
    assert np.abs(clf.logits(TEXTS) - want).max() <= 1e-4
    assert np.abs(proba - softmax(want)).max() <= 1e-4
    assert clf.predict(TEXTS) == [LABELS[i] for i in want.argmax(axis=1)]
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert len({tuple(np.round(row, 4)) for row in proba}) >= 6  # the texts are told apart


def test_int8_matches_runtime_session_and_onnxruntime_labels(int8_bundle):
    """The int8 graph through the Classifier equals the numpy Session run on one HF-tokenized
    text at a time, and picks onnxruntime's labels. One text per batch: dynamic int8 scales each
    activation by its min/max over the whole batch, so int8 logits depend on what is batched
    together (in onnxruntime too). Logit parity with onnxruntime's int8 kernels, which round
    differently from exact integer arithmetic, is the Session's test: this head is sharpened
    50x, which scales those differences 50x too."""
    from runtime import Session
    clf = Classifier.load(int8_bundle, batch_size=1)
    assert clf.quantization == "int8-dynamic"
    want = reference_logits(int8_bundle, TEXTS, session=Session(str(int8_bundle / "model.onnx")))
    assert np.abs(clf.logits(TEXTS) - want).max() <= 1e-5
    onnxruntime_labels = [LABELS[i] for i in reference_logits(int8_bundle, TEXTS).argmax(axis=1)]
    assert clf.predict(TEXTS) == onnxruntime_labels
    clf.batch_size = 4
    assert clf.predict(TEXTS) == onnxruntime_labels


def test_labels_come_from_runtime_json(clf):
    assert clf.labels == list(LABELS)
    assert set(clf.predict(TEXTS)) <= set(LABELS)


# -- batching and order --------------------------------------------------------------------

def test_order_preserved_with_mixed_lengths(clf):
    rng = np.random.default_rng(0)
    texts = [" ".join(["good"] * int(n)) for n in rng.integers(0, 40, size=23)] + TEXTS
    alone = np.stack([clf.predict_proba([t])[0] for t in texts])
    clf.batch_size = 5
    together = clf.predict_proba(texts)
    assert np.abs(together - alone).max() <= 1e-5
    perm = rng.permutation(len(texts))
    assert np.abs(clf.predict_proba([texts[i] for i in perm]) - together[perm]).max() <= 1e-5
    assert clf.predict(texts) == [LABELS[i] for i in alone.argmax(axis=1)]


def test_batches_group_similar_lengths(clf):
    """Long and short texts alternate in the input; each batch holds one kind only."""
    long_text, short_text = " ".join(["film"] * 15), "ok"
    texts = [long_text, short_text] * 4
    clf.session = Recording(clf.session)
    clf.batch_size = 4
    clf.predict(texts)
    widths = sorted(feeds["input_ids"].shape for feeds in clf.session.feeds)
    assert widths == [(4, 3), (4, 17)]  # [CLS] ok [SEP] / [CLS] film x15 [SEP]


def test_feeds_only_the_inputs_runtime_json_lists(clf, fp32_bundle):
    config = json.loads((fp32_bundle / "runtime.json").read_text())
    clf.session = Recording(clf.session)
    clf.predict(["a gripping film", "ok"])
    (feeds,) = clf.session.feeds
    assert sorted(feeds) == sorted(config["inputs"])
    assert all(a.dtype == np.int64 for a in feeds.values())
    assert feeds["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert not feeds["token_type_ids"].any()


def test_batch_size_is_respected(clf):
    clf.session = Recording(clf.session)
    clf.batch_size = 3
    clf.predict(TEXTS)
    sizes = [f["input_ids"].shape[0] for f in clf.session.feeds]
    assert sizes == [3, 3, 3, 3, 2]
    clf.batch_size = 0
    with pytest.raises(ValueError, match="batch_size"):
        clf.predict(["x"])


# -- inputs --------------------------------------------------------------------------------

def test_a_single_string_is_a_type_error(clf):
    with pytest.raises(TypeError, match="not a single str.*\\[text\\]"):
        clf.predict("a gripping film")
    with pytest.raises(TypeError, match="not a single str"):
        clf.predict_proba("a gripping film")
    with pytest.raises(TypeError, match="not a single bytes"):
        clf.predict(b"bytes")


def test_non_string_items_name_their_index(clf):
    with pytest.raises(TypeError, match=r"texts\[2\] is int, not str"):
        clf.predict(["a", "b", 3])
    with pytest.raises(TypeError, match=r"texts\[0\] is NoneType"):
        clf.predict_proba([None])
    with pytest.raises(TypeError, match="list of strings, got int"):
        clf.predict(5)


def test_empty_inputs(clf, fp32_bundle):
    assert clf.predict([]) == []
    assert clf.predict_proba([]).shape == (0, len(LABELS))
    proba = clf.predict_proba([""])
    assert np.abs(proba - softmax(reference_logits(fp32_bundle, [""]))).max() <= 1e-4
    assert clf.predict(("", "ok")) == clf.predict(["", "ok"])  # any iterable of str


def test_overlong_text_is_truncated(clf):
    words = ["boring", "dull", "film", "good"] * 100
    texts = [" ".join(words), " ".join(words[:MAX_LENGTH - 2])]
    clf.session = Recording(clf.session)
    proba = clf.predict_proba(texts)
    (feeds,) = clf.session.feeds
    ids = feeds["input_ids"]
    assert ids.shape == (2, MAX_LENGTH) and feeds["attention_mask"].all()
    assert np.array_equal(ids[0], ids[1]) and ids[0, -1] == clf.tokenizer.sep_id
    assert np.abs(proba[0] - proba[1]).max() <= 1e-6


def test_a_huge_text_is_tokenized_only_as_far_as_max_length(clf, monkeypatch):
    """One 18M-character text took 8.5 s and 1.8 GB when it was tokenized whole."""
    text = "the plot is a mess but the music is lovely " * 120_000           # 5M characters
    seen, real = [], clf.tokenizer.text_ids
    monkeypatch.setattr(clf.tokenizer, "text_ids", lambda t: seen.append(len(t)) or real(t))
    got = clf.predict_proba([text, "ok"])
    monkeypatch.undo()
    assert seen and max(seen) < 10_000, seen                               # a prefix only
    assert np.array_equal(got, clf.predict_proba([text[:2000], "ok"]))


# -- empty batches -------------------------------------------------------------------------

@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
@pytest.mark.parametrize("length", [1, 7, MAX_LENGTH])
def test_empty_batch_runs_like_onnxruntime(int8, length):
    """runtime.Session on input_ids of shape (0, L): an output of shape (0, n_labels), as
    onnxruntime gives (the attention's Reshape(x, [0, L, -1, head_size]) used to fail)."""
    import onnxruntime as ort

    from runtime import Session
    model = tiny_bundle(int8) / "model.onnx"
    feeds = {name: np.zeros((0, length), np.int64) for name in ("input_ids", "attention_mask",
                                                               "token_type_ids")}
    want = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(["logits"], feeds)
    for fuse in (True, False):
        got = Session(str(model), fuse=fuse).run(["logits"], feeds)
        assert [(a.shape, a.dtype) for a in got] == [(a.shape, a.dtype) for a in want] == \
            [((0, len(LABELS)), np.float32)]


# -- threads -------------------------------------------------------------------------------

def test_concurrent_predict_matches_serial(clf):
    texts = TEXTS * 3
    serial = clf.predict_proba(texts)
    results, errors = {}, []

    def worker(k):
        try:
            for _ in range(3):
                results.setdefault(k, []).append(clf.predict_proba(texts))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(len(r) for r in results.values()) == 18
    for runs in results.values():
        for got in runs:
            assert np.array_equal(got, serial)


# -- bad bundles ---------------------------------------------------------------------------

@pytest.fixture
def bundle_copy(fp32_bundle, tmp_path):
    return Path(shutil.copytree(fp32_bundle, tmp_path / "bundle"))


def edit_runtime_json(bundle: Path, **changes):
    path = bundle / "runtime.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def without_vocab_digest(bundle: Path) -> Path:
    """A bundle as exported before runtime.json recorded vocab.txt's SHA-256: the checks below
    are what such a bundle (and a hand-made one) still gets."""
    path = bundle / "runtime.json"
    config = json.loads(path.read_text())
    del config["vocab_sha256"]
    path.write_text(json.dumps(config))
    return bundle


def test_missing_bundle_and_files(tmp_path, bundle_copy):
    with pytest.raises(FileNotFoundError, match="bundle directory not found"):
        Classifier.load(tmp_path / "nowhere")
    for name in ("model.onnx", "vocab.txt", "runtime.json"):
        broken = Path(shutil.copytree(bundle_copy, tmp_path / f"no-{name}"))
        (broken / name).unlink()
        with pytest.raises(FileNotFoundError, match=f"has no {name}"):
            Classifier.load(broken)
        (broken / name).mkdir()                              # there, but not a file
        with pytest.raises(BundleError, match=f"{name} is a directory, not a file"):
            Classifier.load(broken)
    with pytest.raises(TypeError, match="bundle_dir must be a path .*, not NoneType"):
        Classifier.load(None)


@pytest.mark.parametrize("changes, message", [
    ({"format": 2}, "unsupported format 2; this runtime reads format 1"),
    ({"format": None}, "unsupported format None"),
    ({"format": True}, "unsupported format True"),
    ({"format": 1.0}, "unsupported format 1.0"),
    ({"format": "1"}, "unsupported format '1'"),
    ({"labels": []}, "'labels' must be a non-empty list of distinct, non-empty strings"),
    ({"labels": ["a", 1, "c"]}, "'labels' must be"),
    ({"labels": ["pos", "pos", "neg"]}, "'labels' must be a non-empty list of distinct"),
    ({"labels": ["", "a", "b"]}, "'labels' must be a non-empty list of distinct, non-empty strings"),
    ({"vocab_sha256": "ABC"}, "'vocab_sha256' must be the SHA-256 of vocab.txt in lower-case hex"),
    ({"vocab_sha256": None}, "'vocab_sha256' must be"),
    ({"inputs": ["input_ids", "position_ids"]}, "'inputs' must be a non-empty list drawn from"),
    ({"inputs": ["input_ids", "attention_mask"]}, "do not match model.onnx's inputs"),
    ({"output": "probs"}, "output 'probs' is not one of model.onnx's outputs"),
    ({"max_length": 1}, "'max_length' must be an integer >= 2"),
    ({"max_length": "128"}, "'max_length' must be an integer"),
    ({"tokenizer": {"type": "bpe"}}, "unsupported tokenizer type 'bpe'"),
    ({"tokenizer": {"type": "wordpiece", "cls_token": "<s>"}},
     "vocab.txt: cls_token '<s>' is not in the vocabulary"),
    ({"tokenizer": None}, "'tokenizer' must be an object"),
    ({"tokenizer": {"type": "wordpiece", "lower_case": False}},
     "runtime.json: unknown tokenizer setting(s) ['lower_case']"),
    ({"tokenizer": {"type": "wordpiece", "lowercase": "false"}},
     "runtime.json: tokenizer.lowercase must be true or false, got 'false'"),
    ({"tokenizer": {"type": "wordpiece", "strip_accents": 0}},
     "tokenizer.strip_accents must be true, false or null"),
    ({"tokenizer": {"type": "wordpiece", "never_split": "[X]"}}, "tokenizer.never_split must be a list"),
    ({"tokenizer": {"type": "wordpiece", "max_input_chars_per_word": 0}},
     "tokenizer.max_input_chars_per_word must be an integer from 1 to 10,000"),
    ({"tokenizer": {"type": "wordpiece", "max_input_chars_per_word": 10 ** 9}},      # WordPiece's work grows with it
     "tokenizer.max_input_chars_per_word must be an integer from 1 to 10,000"),
    ({"labels": ["negative", "positive"]}, "2 labels, but model.onnx's output 'logits' has 3 columns"),
])
def test_invalid_runtime_json(bundle_copy, changes, message):
    edit_runtime_json(bundle_copy, **changes)
    with pytest.raises(BundleError, match=re.escape(message)):
        Classifier.load(bundle_copy)


def test_runtime_json_not_json(bundle_copy):
    (bundle_copy / "runtime.json").write_text("{format: 1")
    with pytest.raises(BundleError, match="runtime.json: not valid JSON"):
        Classifier.load(bundle_copy)
    (bundle_copy / "runtime.json").write_text("[" * 100_000)              # RecursionError in json
    with pytest.raises(BundleError, match="runtime.json: not valid JSON: nested too deeply"):
        Classifier.load(bundle_copy)
    (bundle_copy / "runtime.json").write_text("[1]")
    with pytest.raises(BundleError, match="expected a JSON object"):
        Classifier.load(bundle_copy)


def test_label_count_is_checked_at_run_when_the_graph_does_not_say(fp32_bundle):
    """The exported graph has a static label dimension (checked at load, above); without one,
    a runtime.json with the wrong number of labels fails on the first batch, never mislabels."""
    clf = Classifier.load(fp32_bundle)
    two_labels = Classifier(clf.session, clf.tokenizer, ["negative", "positive"], clf.inputs,
                            clf.output, clf.max_length)
    with pytest.raises(RuntimeError, match=r"has shape \(1, 3\), expected \(1, 2\) for 2 labels"):
        two_labels.predict(["ok"])


def test_bundle_errors_name_the_file_at_fault(tmp_path, bundle_copy):
    from runtime.onnx import ModelError

    with pytest.raises(NotADirectoryError, match="is a file; a bundle is the directory holding"):
        Classifier.load(bundle_copy / "vocab.txt")
    without_vocab_digest(bundle_copy)
    vocab = (bundle_copy / "vocab.txt").read_bytes()
    (bundle_copy / "vocab.txt").write_bytes(vocab + b"\xff\xfe\n")
    with pytest.raises(BundleError, match=r"vocab\.txt: 'utf-8' codec can't decode"):
        Classifier.load(bundle_copy)
    (bundle_copy / "vocab.txt").write_bytes(vocab.replace(b"[UNK]", b"[UNKNOWN]"))
    with pytest.raises(BundleError, match=r"vocab\.txt: unk_token '\[UNK\]' is not in the vocabulary"):
        Classifier.load(bundle_copy)
    (bundle_copy / "vocab.txt").write_bytes(vocab)
    model = (bundle_copy / "model.onnx").read_bytes()
    (bundle_copy / "model.onnx").write_bytes(model[:len(model) // 2])
    with pytest.raises(ModelError, match=r"model\.onnx: "):
        Classifier.load(bundle_copy)


@pytest.mark.parametrize("name, error", [("runtime.json", BundleError), ("vocab.txt", BundleError),
                                         ("model.onnx", "ModelError")])
def test_unreadable_bundle_files_raise_the_documented_error(bundle_copy, monkeypatch, name, error):
    """A file without read permission is a BundleError (model.onnx: ModelError) naming it, not a
    bare PermissionError. As root, chmod 000 would not stop the read: open() is made to refuse."""
    import builtins

    from runtime.onnx import ModelError
    error = ModelError if error == "ModelError" else error
    path = bundle_copy / name
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        path.chmod(0)
    else:
        real_open = builtins.open

        def refusing_open(file, *args, **kwargs):
            if os.fspath(file) == str(path):
                raise PermissionError(13, "Permission denied", os.fspath(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refusing_open)
    try:
        with pytest.raises(error, match=re.escape(f"{path}: cannot be read: Permission denied")):
            Classifier.load(bundle_copy)
    finally:
        path.chmod(0o644)


def test_vocabulary_larger_than_the_embedding_table_is_refused(tmp_path):
    """721 rows in the tiny models' word embeddings: a vocab.txt with more tokens fails at load
    (not at the first text holding one of them, inside Gather); fewer tokens are fine."""
    for int8 in (False, True):
        bundle = without_vocab_digest(Path(shutil.copytree(tiny_bundle(int8), tmp_path / f"bundle-{int8}")))
        vocab = (bundle / "vocab.txt").read_text(encoding="utf-8")
        assert len(vocab.splitlines()) == 721
        (bundle / "vocab.txt").write_text(vocab + "zebra\nquokka\n", encoding="utf-8")
        with pytest.raises(BundleError, match=re.escape(
                f"{bundle / 'vocab.txt'}: 723 tokens, but the word-embedding table in "
                f"{bundle / 'model.onnx'} has 721 rows: token ids 721 to 722")):
            Classifier.load(bundle)
        (bundle / "vocab.txt").write_text(vocab + "\n\n", encoding="utf-8")  # blank lines: no ids
        Classifier.load(bundle)
        (bundle / "vocab.txt").write_text("\n".join(vocab.splitlines()[:-20]) + "\n", encoding="utf-8")
        assert Classifier.load(bundle).predict(["a gripping film"])[0] in LABELS


def test_vocabulary_one_token_past_the_embedding_table_is_refused(bundle_copy):
    """722 tokens for 721 rows: the one id past the table would fail inside Gather."""
    without_vocab_digest(bundle_copy)
    vocab = (bundle_copy / "vocab.txt").read_text(encoding="utf-8")
    (bundle_copy / "vocab.txt").write_text(vocab + "quokka\n", encoding="utf-8")
    with pytest.raises(BundleError, match=re.escape(
            f"{bundle_copy / 'vocab.txt'}: 722 tokens, but the word-embedding table in "
            f"{bundle_copy / 'model.onnx'} has 721 rows: token ids 721 to 721")):
        Classifier.load(bundle_copy)


def test_max_length_past_the_position_embeddings_is_refused(bundle_copy):
    """The sharp tiny model has 64 positions: runtime.json may say 64, not 65 (a 65-token text
    would fail inside the model)."""
    edit_runtime_json(bundle_copy, max_length=65)
    with pytest.raises(BundleError, match=re.escape(
            f"{bundle_copy / 'runtime.json'}: max_length 65 is more than the 64 positions of the "
            f"position embeddings in {bundle_copy / 'model.onnx'}")):
        Classifier.load(bundle_copy)
    edit_runtime_json(bundle_copy, max_length=64)
    clf = Classifier.load(bundle_copy)
    assert clf.logits([" ".join(["film"] * 100)]).shape == (1, len(LABELS))


def test_max_length_is_checked_in_an_export_made_without_constant_folding(bundle_copy):
    """The TorchScript exporter with do_constant_folding=False slices position_ids with starts
    from Unsqueeze(Constant): the check read only initializers and Constants, so a max_length
    past the table loaded and failed at the first long text. It now reads the session's folded
    values too."""
    import warnings

    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bundle().parent / "model",
                                                               attn_implementation="eager").eval()
    ids = torch.ones(2, 9, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, ids, ids * 0), str(bundle_copy / "model.onnx"), dynamo=False,
                          opset_version=17, do_constant_folding=False, input_names=names,
                          output_names=["logits"], dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names})
    edit_runtime_json(bundle_copy, max_length=65)
    with pytest.raises(BundleError, match=re.escape("max_length 65 is more than the 64 positions")):
        Classifier.load(bundle_copy)
    edit_runtime_json(bundle_copy, max_length=64)
    assert Classifier.load(bundle_copy).logits([" ".join(["film"] * 100)]).shape == (1, len(LABELS))


def test_a_vocab_txt_other_than_the_exported_one_is_refused(bundle_copy):
    """A same-size or smaller vocab.txt (another bundle's, a trimmed student's) loaded silently and
    gave wrong token ids; runtime.json now records the exported file's SHA-256."""
    import hashlib

    path = bundle_copy / "vocab.txt"
    vocab = path.read_bytes()
    assert json.loads((bundle_copy / "runtime.json").read_text())["vocab_sha256"] == hashlib.sha256(vocab).hexdigest()
    lines = vocab.decode("utf-8").splitlines()
    swapped = lines[:10] + [lines[11], lines[10]] + lines[12:]
    for other in ("\n".join(swapped) + "\n", "\n".join(lines[:-100]) + "\n", "\n".join(lines + ["zebra"]) + "\n"):
        path.write_bytes(other.encode("utf-8"))
        with pytest.raises(BundleError, match=re.escape(f"{path} is not the vocabulary exported with this model")):
            Classifier.load(bundle_copy)
    path.write_bytes(vocab)
    expected = Classifier.load(bundle_copy).logits(TEXTS)
    for same_tokens in (vocab.replace(b"\n", b"\r\n"), b"\xef\xbb\xbf" + vocab):   # autocrlf, an editor's BOM
        path.write_bytes(same_tokens)
        np.testing.assert_array_equal(Classifier.load(bundle_copy).logits(TEXTS), expected)


def test_a_byte_order_mark_is_not_part_of_the_first_token(bundle_copy):
    """A vocab.txt saved by an editor that adds a BOM (a bundle without the SHA-256) said
    "pad_token '[PAD]' is not in the vocabulary"."""
    expected = Classifier.load(bundle_copy).logits(TEXTS)
    without_vocab_digest(bundle_copy)
    path = bundle_copy / "vocab.txt"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    np.testing.assert_array_equal(Classifier.load(bundle_copy).logits(TEXTS), expected)


def test_progress_is_called_after_each_batch(fp32_bundle):
    """For an app's progress bar: (texts done, texts in all) after every batch."""
    clf = Classifier.load(fp32_bundle, batch_size=5)
    calls = []
    logits = clf.logits(TEXTS, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(5, len(TEXTS)), (10, len(TEXTS)), (len(TEXTS), len(TEXTS))]
    np.testing.assert_array_equal(logits, clf.logits(TEXTS))
    assert clf.predict(TEXTS, progress=lambda *a: calls.append(a)) == clf.predict(TEXTS) and len(calls) == 6
    with pytest.raises(TypeError, match="progress must be a callable"):
        clf.predict_proba(TEXTS, progress=True)


def test_a_classifier_pickles_for_process_pools(clf, fp32_bundle):
    """Sent to a worker of a process pool (spawn: macOS, Windows), a Classifier is pickled; the
    tokenizer held a closure, which cannot be."""
    import pickle

    copy = pickle.loads(pickle.dumps(Classifier.load(os.fsencode(fp32_bundle))))
    np.testing.assert_array_equal(copy.logits(TEXTS), clf.logits(TEXTS))
    assert copy.path == str(fp32_bundle)


def test_the_documented_error_classes_are_importable_before_any_load(bundle_copy):
    """runtime.onnx is imported on first load, so `except (runtime.BundleError,
    runtime.onnx.ModelError)` around the first load raised AttributeError instead."""
    edit_runtime_json(bundle_copy, format=2)
    code = ("import runtime\n"
            "try:\n    runtime.Classifier.load(%r)\n"
            "except (runtime.BundleError, runtime.ModelError) as e:\n    print('caught', type(e).__name__)\n"
            "from runtime.onnx import ModelError\nassert runtime.ModelError is ModelError\n") % str(bundle_copy)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "caught BundleError", done.stderr


def test_cli_version_is_the_packages(fp32_bundle):
    import runtime

    pyproject = (ROOT / "runtime" / "pyproject.toml").read_text()
    assert f'version = "{runtime.__version__}"' in pyproject
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.decode().strip() == f"python -m runtime {runtime.__version__}"


@pytest.mark.parametrize("batch_size", [0, -3, "4", 2.0, True, None])
def test_bad_batch_size_is_refused_at_load(fp32_bundle, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        Classifier.load(fp32_bundle, batch_size=batch_size)


def test_numpy_integer_batch_size(fp32_bundle):
    clf = Classifier.load(fp32_bundle, batch_size=np.int64(2))
    assert clf.batch_size == 2 and type(clf.batch_size) is int
    assert clf.predict(TEXTS) == Classifier.load(fp32_bundle).predict(TEXTS)
    clf.batch_size = 0  # set by the app after load: checked when used
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        clf.predict(["ok"])


# -- command line --------------------------------------------------------------------------

def run_cli(*args, stdin=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "runtime", *map(str, args)], input=stdin,
                          capture_output=True, env=env, cwd=ROOT, timeout=120)


def parse_lines(stdout: bytes):
    return [json.loads(line) for line in stdout.decode("utf-8").splitlines()]


def test_cli_texts_as_arguments(fp32_bundle):
    texts = ["a gripping film", "中文 电影", ""]
    result = run_cli(fp32_bundle, *texts)
    assert result.returncode == 0, result.stderr
    records = parse_lines(result.stdout)
    proba = Classifier.load(fp32_bundle).predict_proba(texts)
    assert [r["text"] for r in records] == texts
    for record, row in zip(records, proba):
        assert list(record["probabilities"]) == list(LABELS)
        assert np.allclose(list(record["probabilities"].values()), row, atol=1e-7)
        assert record["label"] == LABELS[int(row.argmax())]


def test_cli_reads_stdin_one_text_per_line(fp32_bundle):
    texts = ["a gripping film", "dull and lifeless", "Café", "", "ok"]
    result = run_cli(fp32_bundle, "--batch-size", "2", stdin="\n".join(texts).encode("utf-8") + b"\n")
    assert result.returncode == 0, result.stderr
    records = parse_lines(result.stdout)
    assert [r["text"] for r in records] == texts
    assert [r["label"] for r in records] == Classifier.load(fp32_bundle).predict(texts)


def test_cli_batch_size_sets_the_batches_the_model_runs(fp32_bundle, monkeypatch, capsys):
    """python -m runtime in-process: --batch-size reaches the Classifier and cuts its batches."""
    from runtime.__main__ import main

    sizes = []
    run_batch = Classifier._run_batch
    monkeypatch.setattr(Classifier, "_run_batch", lambda self, rows: sizes.append(len(rows)) or run_batch(self, rows))
    texts = TEXTS[:7]
    assert main([str(fp32_bundle), "--batch-size", "3", *texts]) == 0
    assert sizes == [3, 3, 1]
    records = parse_lines(capsys.readouterr().out.encode("utf-8"))
    assert [r["text"] for r in records] == texts
    assert [r["label"] for r in records] == Classifier.load(fp32_bundle).predict(texts)


def test_cli_answers_each_line_as_it_arrives(fp32_bundle):
    """An app may drive the command as a co-process: one line in, one JSON line out."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "runtime", str(fp32_bundle)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    answers = []
    reader = threading.Thread(target=lambda: answers.extend(proc.stdout.readline() for _ in range(2)))
    try:
        reader.start()
        proc.stdin.write(b"a gripping film\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while not answers and time.monotonic() < deadline:  # stdin stays open meanwhile
            time.sleep(0.05)
        assert len(answers) == 1, "no answer to the first line while stdin was still open"
        proc.stdin.write(b"dull and lifeless\n")
        proc.stdin.close()
        reader.join(60)
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        proc.kill()
    records = parse_lines(b"".join(answers))
    assert [r["text"] for r in records] == ["a gripping film", "dull and lifeless"]
    assert [r["label"] for r in records] == Classifier.load(fp32_bundle).predict(
        ["a gripping film", "dull and lifeless"])


def test_cli_stdin_bom_crlf_and_bad_bytes(fp32_bundle):
    result = run_cli(fp32_bundle, stdin=b"\xef\xbb\xbfa film\r\ncarriage\rreturn\n\xff bytes\nlast")
    assert result.returncode == 0, result.stderr
    texts = [r["text"] for r in parse_lines(result.stdout)]
    assert texts == ["a film", "carriage\rreturn", "\ufffd bytes", "last"]


def test_waiting_for_stdin_wakes_up_in_short_steps(monkeypatch):
    """A wait without a timeout cannot be interrupted by Ctrl-C on Windows (before Python 3.14):
    the wait is made of short timed ones, and still returns the line that comes."""
    import queue

    from runtime.__main__ import wait_for

    lines, timeouts = queue.Queue(), []
    real_get = queue.Queue.get

    def get(self, block=True, timeout=None):
        timeouts.append(timeout)
        return real_get(self, block, timeout)

    monkeypatch.setattr(queue.Queue, "get", get)
    threading.Timer(0.6, lines.put, args=("a line",)).start()
    assert wait_for(lines) == "a line"
    assert len(timeouts) >= 2 and all(t is not None and t <= 0.25 for t in timeouts)


def test_stdin_chunks_keep_every_line_in_order():
    from runtime.__main__ import stdin_chunks

    lines = [f"text {i}" for i in range(2500)]
    chunks = list(stdin_chunks(1024, io.StringIO("\n".join(lines) + "\n")))
    assert [line for chunk in chunks for line in chunk] == lines
    assert all(1 <= len(chunk) <= 1024 for chunk in chunks)

    class Failing(io.StringIO):
        def __iter__(self):
            yield "one\n"
            raise OSError("stdin went away")

    with pytest.raises(OSError, match="stdin went away"):
        list(stdin_chunks(1024, Failing()))


def test_cli_text_argument_that_is_not_utf8(fp32_bundle):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "runtime", str(fp32_bundle), b"\xff\xfe bad", "good"],
                            capture_output=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [r["text"] for r in parse_lines(result.stdout)] == ["\ufffd\ufffd bad", "good"]


def test_cli_without_arguments_names_the_bundle_only():
    for args in ((), ("--",), ("--batch-size", "2", "--")):
        result = run_cli(*args)
        assert result.returncode == 2
        assert b"required: bundle\n" in result.stderr and b"TEXT" not in result.stderr.splitlines()[-1]


def test_cli_everything_after_double_dash_is_a_text(fp32_bundle):
    result = run_cli(fp32_bundle, "--", "a", "--", "b")
    assert result.returncode == 0, result.stderr
    assert [r["text"] for r in parse_lines(result.stdout)] == ["a", "--", "b"]
    result = run_cli("--", fp32_bundle, "-5%跌幅", "--batch-size")
    assert result.returncode == 0, result.stderr
    records = parse_lines(result.stdout)
    assert [r["text"] for r in records] == ["-5%跌幅", "--batch-size"]
    assert [r["label"] for r in records] == Classifier.load(fp32_bundle).predict(["-5%跌幅", "--batch-size"])
    help_text = run_cli("--help").stdout.decode()
    assert "every argument after the" in help_text and "-- \"-5% today\"" in help_text


@pytest.mark.parametrize("argv, bundle, texts, batch_size", [
    (["B", "a", "b"], "B", ["a", "b"], 32),
    (["B", "a", "--batch-size", "3", "b"], "B", ["a", "b"], 3),               # options anywhere
    (["B", "--", "a", "--", "b"], "B", ["a", "--", "b"], 32),
    (["--", "B", "-5%"], "B", ["-5%"], 32),
    (["--batch-size", "2", "B", "--", "--batch-size", "-x"], "B", ["--batch-size", "-x"], 2),
    (["B", "--"], "B", [], 32),                                              # no texts: stdin
    (["B", "--", "--"], "B", ["--"], 32),
])
def test_cli_argument_parsing(argv, bundle, texts, batch_size):
    from runtime.__main__ import parse_args
    args = parse_args(argv)
    assert (args.bundle, args.texts, args.batch_size) == (bundle, texts, batch_size)


def test_cli_errors_go_to_stderr(tmp_path, bundle_copy):
    result = run_cli(tmp_path / "nowhere", "text")
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr.startswith(b"Error: bundle directory not found")      # as the distill commands write it
    edit_runtime_json(bundle_copy, format=7)
    result = run_cli(bundle_copy, "text")
    assert result.returncode == 1 and b"unsupported format 7" in result.stderr
    result = run_cli(bundle_copy, "--batch-size", "0", "text")
    assert result.returncode == 2 and b"--batch-size must be at least 1" in result.stderr
