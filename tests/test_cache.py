"""Teacher-logits cache: keys, storage, and a second student run that never calls the teacher."""
from dataclasses import asdict, replace

import numpy as np
import pytest

from distill.augment import AugmentOptions
from distill.cache import LogitsCache, cache_key, cached_logits, texts_sha256, weights_sha256

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from two threads, and on a shared 2-core machine OpenMP threads
    that wait for each other make every step many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


BASE = {"teacher": "a" * 64, "file": "b" * 64, "texts": texts_sha256(["good film", "dull"]),
        "max_length": 128, "part": "augmented", "augmentation": asdict(AugmentOptions())}


def variants():
    """BASE with exactly one input changed, for every input that decides the logits."""
    yield "teacher", {**BASE, "teacher": "c" * 64}
    yield "file", {**BASE, "file": "d" * 64}
    yield "texts", {**BASE, "texts": texts_sha256(["good film", "dull!"])}
    yield "max_length", {**BASE, "max_length": 64}
    yield "part", {**BASE, "part": "labelled"}
    options = AugmentOptions()
    for name, value in (("factor", 3), ("ops", ("swap",)), ("rate", 0.2), ("neighbours", 3), ("seed", 1),
                        ("back_translate", ("fwd", "bwd"))):
        yield f"augmentation.{name}", {**BASE, "augmentation": asdict(replace(options, **{name: value}))}


@pytest.mark.parametrize("name,fields", list(variants()), ids=[n for n, _ in variants()])
def test_key_changes_when_any_input_changes(name, fields):
    assert cache_key(fields) != cache_key(BASE)


def test_key_is_stable_and_order_free():
    assert cache_key(BASE) == cache_key(dict(reversed(list(BASE.items()))))
    assert len(cache_key(BASE)) == 32
    assert texts_sha256(["ab"]) != texts_sha256(["a", "b"])
    assert texts_sha256(["a", "b"]) != texts_sha256(["b", "a"])


def test_weights_hash_follows_the_weight_bytes(tiny_model_dir):
    before = weights_sha256(tiny_model_dir)
    assert before == weights_sha256(tiny_model_dir)
    weights = tiny_model_dir / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    assert weights_sha256(tiny_model_dir) != before
    with pytest.raises(FileNotFoundError):
        weights_sha256(tiny_model_dir / "tokenizer_config.json")


TOKENIZER_EDITS = [("vocab.txt", "[MASK]\n", "[MASK]\nzzz\n"),
                   ("tokenizer_config.json", '"do_lower_case": true', '"do_lower_case": false'),
                   ("tokenizer.json", '"lowercase": true', '"lowercase": false'),
                   ("config.json", '"hidden_act": "gelu"', '"hidden_act": "relu"')]


@pytest.mark.parametrize("name,old,new", TOKENIZER_EDITS)
def test_weights_hash_follows_the_tokenizer_files(tiny_model_dir, name, old, new):
    """Editing only the teacher's tokenizer or config changes the logits of every text, so it
    must change the cache key (whose teacher field is this hash); other files do not."""
    before = weights_sha256(tiny_model_dir)
    (tiny_model_dir / "README.md").write_text("notes")
    assert weights_sha256(tiny_model_dir) == before
    path = tiny_model_dir / name
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    edited = weights_sha256(tiny_model_dir)
    assert edited != before
    path.unlink()
    assert weights_sha256(tiny_model_dir) not in (before, edited)


def test_a_concurrent_writer_of_the_same_entry_is_not_an_error(tmp_path, monkeypatch):
    """Two runs sharing a cache compute the same part; the other run renames its entry into place
    just before this one does (os.replace: "Directory not empty"). Same key, same contents: the
    entry is kept and this run goes on."""
    import os

    import distill.cache as cache_module

    key, texts, logits = cache_key(BASE), ["x", "y"], np.eye(2, dtype=np.float32)
    real_replace, raced = os.replace, []

    def other_run_renames_first(src, dst):
        if not raced:
            raced.append(dst)
            LogitsCache(tmp_path).put(key, BASE, texts, logits)
        real_replace(src, dst)

    monkeypatch.setattr(cache_module.os, "replace", other_run_renames_first)
    LogitsCache(tmp_path).put(key, BASE, texts, logits)
    monkeypatch.undo()
    assert raced == [tmp_path / "teacher-logits" / key]
    got_texts, got_logits = LogitsCache(tmp_path).get(key)
    assert got_texts == texts and np.array_equal(got_logits, logits)
    assert [p.name for p in (tmp_path / "teacher-logits").iterdir()] == [key]   # no temporary dirs left


def test_cached_logits_computes_once_then_reads(tmp_path):
    cache = LogitsCache(tmp_path)
    calls = []

    def score(texts):
        calls.append(list(texts))
        return np.arange(2 * len(texts), dtype=np.float32).reshape(-1, 2)

    first = cached_logits(cache, BASE, lambda: ["x", "y", "z"], score)
    assert not first["hit"] and calls == [["x", "y", "z"]]
    second = cached_logits(cache, BASE, lambda: pytest.fail("texts rebuilt"), lambda t: pytest.fail("scored"))
    assert second["hit"] and second["texts"] == ["x", "y", "z"]
    np.testing.assert_array_equal(second["logits"], first["logits"])
    entry = tmp_path / "teacher-logits" / first["key"]
    assert sorted(p.name for p in entry.iterdir()) == ["logits.npy", "meta.json", "texts.json"]
    # a damaged entry is recomputed, not trusted
    (entry / "texts.json").write_text("[\"x\"]")
    third = cached_logits(cache, BASE, lambda: ["x", "y", "z"], score)
    assert not third["hit"] and len(calls) == 2


def test_no_cache_never_stores(tmp_path):
    cache = LogitsCache(None)
    calls = []
    for _ in range(2):
        out = cached_logits(cache, BASE, lambda: ["x"], lambda t: calls.append(1) or np.ones((1, 2)))
        assert not out["hit"]
    assert len(calls) == 2 and not list(tmp_path.iterdir())


def test_second_student_run_reuses_the_cache(tiny_model_dir, reviews_csv, tmp_path, monkeypatch):
    import distill.teacher_logits as teacher_logits
    from distill.student import StudentConfig, distill_student

    train, dev = reviews_csv
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("a gripping film\nthe plot was dull\nfine acting\n", encoding="utf-8")
    config = StudentConfig(teacher=str(tiny_model_dir), train=str(train), eval=str(dev), out=str(tmp_path / "s1"),
                           unlabeled=str(unlabeled), augment_factor=1, epochs=1, batch_size=16, max_length=32,
                           layers=1, cache_dir=str(tmp_path / "cache"), progress=False)
    scored = []
    real_score = teacher_logits.score_with_teacher
    monkeypatch.setattr(teacher_logits, "score_with_teacher", lambda *a, **k: scored.append(len(a[2])) or real_score(*a, **k))
    first = distill_student(config)
    assert sorted(scored) == [3, 80, 80]          # unlabelled, labelled, augmented (factor 1)
    assert not any(p["cache_hit"] for p in first["distillation"]["teacher_logits"].values())

    def never(*args, **kwargs):
        raise AssertionError("the teacher scored training texts on a cached run")

    monkeypatch.setattr(teacher_logits, "score_with_teacher", never)
    second = distill_student(replace(config, out=str(tmp_path / "s2")))
    parts = second["distillation"]["teacher_logits"]
    assert set(parts) == {"labelled", "augmented", "unlabeled"} and all(p["cache_hit"] for p in parts.values())
    assert second["data"]["train_rows_used"] == first["data"]["train_rows_used"] == 163

    # another max_length is another key: the teacher runs again
    with pytest.raises(AssertionError, match="scored training texts"):
        distill_student(replace(config, out=str(tmp_path / "s3"), max_length=24))
    # other augmentation settings are another key for the augmented texts only
    scored.clear()
    monkeypatch.setattr(teacher_logits, "score_with_teacher", lambda *a, **k: scored.append(len(a[2])) or real_score(*a, **k))
    third = distill_student(replace(config, out=str(tmp_path / "s4"), augment_rate=0.3))
    parts = third["distillation"]["teacher_logits"]
    assert parts["labelled"]["cache_hit"] and parts["unlabeled"]["cache_hit"] and not parts["augmented"]["cache_hit"]
    assert scored == [80]

    # another teacher batch size pads otherwise, another thread count sums otherwise: both move
    # the logits in the last bits, so a hit must not hand over the other run's logits
    import torch

    monkeypatch.setattr(teacher_logits, "score_with_teacher", never)
    with pytest.raises(AssertionError, match="scored training texts"):
        distill_student(replace(config, out=str(tmp_path / "s5"), teacher_batch_size=7))
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        with pytest.raises(AssertionError, match="scored training texts"):
            distill_student(replace(config, out=str(tmp_path / "s6")))
    finally:
        torch.set_num_threads(threads)
