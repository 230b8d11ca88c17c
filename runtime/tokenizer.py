"""BERT WordPiece tokenizer with numpy and the standard library only.

Matches Hugging Face's Python BERT tokenizer (`BertTokenizerLegacy` in transformers 5,
the slow `BertTokenizer` before) token for token:

1. split the raw text on special tokens ([CLS], [SEP], ...), which pass through whole;
2. every other chunk: drop NUL, U+FFFD and control characters, map whitespace to " ",
   space out CJK ideographs, NFC-normalise, split on whitespace;
3. per word (unless never-split): lower-case, strip accents (NFD, drop Mn marks),
   split off punctuation (ASCII symbols and Unicode P*);
4. greedy longest-match WordPiece with "##" continuations; [UNK] for a word longer than
   100 characters or one that cannot be covered by the vocabulary.

`encode(text, max_length)` tokenizes only as much of a long text as it needs: a prefix cut
just before a character that cleaning turns into a space (whitespace, a spaced-out CJK
ideograph), where the ids of the whole text are those of the prefix followed by those of the
rest (see `WordPieceTokenizer.leading_ids`).

Speed comes from doing per-character work inside C string methods (`str.translate` with
tables filled lazily per code point, `str.lower`, `unicodedata.normalize`, `str.split`)
instead of Python loops, and from caching WordPiece results per word.
"""
from __future__ import annotations

import functools
import io
import re
import unicodedata
from itertools import chain

import numpy as np

MAX_INPUT_CHARS_PER_WORD = 100
WORD_CACHE_SIZE = 1 << 16
CACHED_WORD_CHARS = 64
MAX_WORD_CHARS_LIMIT = 10_000   # runtime.json's max_input_chars_per_word: WordPiece's work grows with it
CHAR_TABLE_LIMIT = 1 << 16  # code points remembered per lazy table; beyond, computed each time

# the CJK Unified Ideographs blocks that BERT spaces out (same ranges as Hugging Face)
CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)
# where a long text may be cut (`WordPieceTokenizer.leading_ids`): candidates found by one regex
# search, each confirmed against the tokenizer's own cleaning table before use. " \t\n\r" and
# the Zs spaces (Unicode 6.3 to 15.1) become " "; the CJK_RANGES are spaced out when
# tokenize_chinese_chars (unassigned code points in them are dropped instead: not confirmed)
CUT_SPACES = " \t\n\r\xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
CUT_TRIES = 64           # candidates examined per window before trying a longer prefix
PREFIX_CHARS_PER_ID = 8  # the first prefix holds this many characters per wanted id (+ 64)
PREFIX_GROWTH = 4        # each further prefix is this many times longer
CONFIG_KEYS = {"type", "lowercase", "strip_accents", "tokenize_chinese_chars", "unk_token",
               "cls_token", "sep_token", "pad_token", "mask_token", "never_split",
               "max_input_chars_per_word"}


def is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_control(ch: str) -> bool:
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True  # every non-alphanumeric printable ASCII character counts, e.g. $ ^ `
    return unicodedata.category(ch).startswith("P")


class LazyTable(dict):
    """A `str.translate` table whose entries are computed on first sight of a code point."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule  # code point -> int (keep / replace), str (replace) or None (delete)

    def __missing__(self, cp: int):
        value = self.rule(cp)
        if len(self) < CHAR_TABLE_LIMIT:  # bounded: crafted text cannot grow it without limit
            self[cp] = value
        return value


def clean_char(cp: int, space_cjk: bool):
    ch = chr(cp)
    if cp == 0 or cp == 0xFFFD or is_control(ch):
        return None
    if is_whitespace(ch):
        return " "
    if space_cjk and is_cjk(cp):
        return " " + ch + " "
    return cp


def clean_rule(space_cjk: bool):
    """clean_char for one setting; a partial, not a closure, so that a tokenizer (and a
    Classifier) pickles, e.g. to be sent to a process pool's workers."""
    return functools.partial(clean_char, space_cjk=space_cjk)


def cut_pattern(space_cjk: bool) -> re.Pattern:
    """Characters that may end a prefix: spaces, and the CJK ranges when they are spaced out."""
    cjk = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in CJK_RANGES) if space_cjk else ""
    return re.compile(f"[{CUT_SPACES}{cjk}]")


def mark_rule(cp: int):
    return None if unicodedata.category(chr(cp)) == "Mn" else cp


def punctuation_rule(cp: int):
    ch = chr(cp)
    return " " + ch + " " if is_punctuation(ch) else cp


class WordCache(dict):
    """word -> WordPiece ids; lookups stay in C, a miss computes and stores (emptied when full,
    and only words of at most CACHED_WORD_CHARS characters are kept, so memory stays bounded
    whatever the input: a hundred distinct million-character words kept 600 MB)."""

    def __init__(self, compute):
        super().__init__()
        self.compute = compute

    def __missing__(self, word: str):
        ids = self.compute(word)
        if len(word) <= CACHED_WORD_CHARS:
            if len(self) >= WORD_CACHE_SIZE:
                self.clear()
            self[word] = ids
        return ids


ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
ASCII_PIECES = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9 \t\n\r]")


def load_vocab(path) -> dict[str, int]:
    """vocab.txt -> {token: id}, one token a line (a repeated token keeps its last line, as HF)."""
    with open(path, "rb") as f:
        return vocab_from_bytes(f.read())


def vocab_from_bytes(data: bytes) -> dict[str, int]:
    """load_vocab of a file's bytes: UTF-8, a byte-order mark (an editor that adds one) not part
    of the first token, line ends as text mode reads them (\n, \r\n or \r)."""
    lines = io.StringIO(data.decode("utf-8-sig"), newline=None).readlines()
    return {line.rstrip("\n"): i for i, line in enumerate(lines)}


def check_texts(texts, verb: str = "encode") -> list[str]:
    """A list (any iterable) of str -> list; a bare str or bytes, or a non-str item, is a TypeError
    (iterating a str would silently make each character a text)."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"texts must be a list of strings, not a single {type(texts).__name__}: "
                        f"pass [text] to {verb} one text")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}") from None
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, not str")
    return texts


def tokenizer_kwargs(config: dict) -> dict:
    """runtime.json's `tokenizer` object -> WordPieceTokenizer keyword arguments.

    Checked strictly, so that a misspelt key or a "false" string is an error instead of a
    silently different tokenizer."""
    if not isinstance(config, dict):
        raise ValueError("runtime.json 'tokenizer' must be an object")
    if config.get("type", "wordpiece") != "wordpiece":
        raise ValueError(f"unsupported tokenizer type {config.get('type')!r} (expected 'wordpiece')")
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise ValueError(f"unknown tokenizer setting(s) {unknown}; known: {sorted(CONFIG_KEYS)}")

    def bad(key, expected):
        raise ValueError(f"tokenizer.{key} must be {expected}, got {config[key]!r}")

    for key in ("lowercase", "tokenize_chinese_chars"):
        if key in config and not isinstance(config[key], bool):
            bad(key, "true or false")
    if config.get("strip_accents") is not None and not isinstance(config["strip_accents"], bool):
        bad("strip_accents", "true, false or null")
    for key in ("unk_token", "cls_token", "sep_token", "pad_token"):
        if key in config and not (isinstance(config[key], str) and config[key]):
            bad(key, "a non-empty string")
    if config.get("mask_token") is not None and not isinstance(config["mask_token"], str):
        bad("mask_token", "a string or null")
    if "never_split" in config and not (isinstance(config["never_split"], list)
                                        and all(isinstance(t, str) for t in config["never_split"])):
        bad("never_split", "a list of strings")
    chars = config.get("max_input_chars_per_word", MAX_INPUT_CHARS_PER_WORD)
    if not (isinstance(chars, int) and not isinstance(chars, bool) and 1 <= chars <= MAX_WORD_CHARS_LIMIT):
        bad("max_input_chars_per_word", f"an integer from 1 to {MAX_WORD_CHARS_LIMIT:,}")
    return {k: v for k, v in config.items() if k != "type"}


class WordPieceTokenizer:
    """BERT tokenizer: `tokenize(text)`, `encode(text)`, `encode_batch(texts, max_length)`."""

    def __init__(self, vocab, lowercase: bool = True, strip_accents: bool | None = None,
                 tokenize_chinese_chars: bool = True, unk_token: str = "[UNK]",
                 cls_token: str = "[CLS]", sep_token: str = "[SEP]", pad_token: str = "[PAD]",
                 mask_token: str | None = "[MASK]", never_split=(),
                 max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD):
        self.vocab = dict(vocab) if isinstance(vocab, dict) else load_vocab(vocab)
        for name, token in (("unk_token", unk_token), ("cls_token", cls_token),
                            ("sep_token", sep_token), ("pad_token", pad_token)):
            if token not in self.vocab:
                raise ValueError(f"{name} {token!r} is not in the vocabulary")
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.lowercase = bool(lowercase)
        self.strip_accents = self.lowercase if strip_accents is None else bool(strip_accents)
        self.unk_token, self.cls_token, self.sep_token, self.pad_token = (
            unk_token, cls_token, sep_token, pad_token)
        self.unk_id, self.cls_id, self.sep_id, self.pad_id = (
            self.vocab[t] for t in (unk_token, cls_token, sep_token, pad_token))
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self.max_piece_chars = max(map(len, self.vocab), default=1)

        # special tokens split the raw text and pass through whole; a mask token the vocabulary
        # lacks is left out (HF would give it an id past the end of the embedding table)
        specials = [unk_token, sep_token, pad_token, cls_token]
        if mask_token and mask_token in self.vocab:
            specials.append(mask_token)
        self.special_tokens = frozenset(specials)
        # longest first, so the leftmost match is also the longest one (as HF's trie)
        alternatives = sorted(self.special_tokens, key=len, reverse=True)
        self._special_split = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")
        self.never_split = frozenset(never_split)  # kept whole and never WordPiece-split
        self._keep_whole = self.special_tokens | self.never_split
        self._special_firsts = "".join(sorted({t[0] for t in self.special_tokens}))
        self._keep_firsts = "".join(sorted({t[0] for t in self._keep_whole if t}))
        self._special_chars = frozenset("".join(self.special_tokens))
        self._cut_candidates = cut_pattern(bool(tokenize_chinese_chars))

        self._clean = LazyTable(clean_rule(bool(tokenize_chinese_chars)))
        self._marks = LazyTable(mark_rule)
        self._punctuation = LazyTable(punctuation_rule)
        self._word_ids = WordCache(self._wordpiece_ids).__getitem__  # word -> tuple of ids
        # a word can only turn into a kept-whole token by normalising if some kept-whole
        # token is a fixed point of normalising (not "[UNK]" when lower-casing): then go
        # word by word like HF, otherwise normalise the whole text at once
        self._per_word = (self.lowercase or self.strip_accents) and any(
            self._normalize(t) == t for t in self._keep_whole)

    @classmethod
    def from_config(cls, vocab, config: dict) -> "WordPieceTokenizer":
        """Build from vocab.txt (a path, or its {token: id}) and runtime.json's `tokenizer`."""
        return cls(vocab, **tokenizer_kwargs(config))

    # -- text -> words ---------------------------------------------------------------------

    def _basic_words(self, chunk: str) -> list[str]:
        """Clean, space CJK, NFC, lower-case, strip accents, split punctuation (HF BasicTokenizer).

        HF does this word by word; the whole text at once gives the same words (lower-casing,
        NFD and the per-character tables never act across whitespace: a final sigma's context
        stops there too) unless a word is, or becomes, a never-split token."""
        if chunk.isascii():  # fast path: no accents, CJK or Unicode categories to look up
            text = ASCII_CONTROLS.sub("", chunk)
            if self._per_word or self._has_keep_whole(text):
                return self._words_one_by_one(text.split())
            return ASCII_PIECES.findall(text.lower() if self.lowercase else text)
        text = unicodedata.normalize("NFC", chunk.translate(self._clean))
        if self._per_word or self._has_keep_whole(text):
            return self._words_one_by_one(text.split())
        return self._normalize(text).translate(self._punctuation).split()

    def _has_keep_whole(self, text: str) -> bool:
        return any(c in text for c in self._keep_firsts) and not self._keep_whole.isdisjoint(text.split())

    def _words_one_by_one(self, words: list[str]) -> list[str]:
        """HF's per-word loop, needed when a word is (or becomes) a never-split token."""
        out = []
        for word in words:
            if word not in self._keep_whole:
                word = self._normalize(word)
                if word not in self._keep_whole:
                    out.extend(word.translate(self._punctuation).split())
                    continue
            out.append(word)
        return out

    def _normalize(self, text: str) -> str:
        if self.lowercase:
            text = text.lower()
        if self.strip_accents:
            text = unicodedata.normalize("NFD", text).translate(self._marks)
        return text

    # -- words -> ids ----------------------------------------------------------------------

    def _wordpiece_ids(self, word: str) -> tuple[int, ...]:
        """Greedy longest-match-first WordPiece; (unk,) when the word cannot be covered."""
        if len(word) > self.max_input_chars_per_word:
            return (self.unk_id,)
        vocab, ids, start, n = self.vocab, [], 0, len(word)
        while start < n:
            end = min(n, start + self.max_piece_chars)  # no vocabulary entry is longer
            while end > start:
                piece_id = vocab.get(word[start:end] if start == 0 else "##" + word[start:end])
                if piece_id is not None:
                    break
                end -= 1
            else:
                return (self.unk_id,)
            ids.append(piece_id)
            start = end
        return tuple(ids)

    def _chunk_ids(self, chunk: str, out: list[int]) -> None:
        words = self._basic_words(chunk)
        if not self.never_split:  # the usual case: one C-level pass over the cached pieces
            out.extend(chain.from_iterable(map(self._word_ids, words)))
            return
        for word in words:
            if word in self.never_split:  # HF keeps these whole, even when not in the vocabulary
                out.append(self.vocab.get(word, self.unk_id))
            else:
                out.extend(self._word_ids(word))

    def text_ids(self, text: str) -> list[int]:
        """Token ids of text, without [CLS]/[SEP]."""
        ids: list[int] = []
        if any(c in text for c in self._special_firsts):
            chunks = [piece for piece in self._special_split.split(text) if piece]
        else:
            chunks = [text]
        for chunk in chunks:
            if chunk in self.special_tokens:
                ids.append(self.vocab[chunk])
            else:
                self._chunk_ids(chunk, ids)
        return ids

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of text, without [CLS]/[SEP] (as HF `tokenize`)."""
        return [self.id_to_token[i] for i in self.text_ids(text)]

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_id)
        return [self.vocab.get(t, self.unk_id) for t in tokens]

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, (int, np.integer)):
            return self.id_to_token.get(int(ids), self.unk_token)
        return [self.id_to_token.get(int(i), self.unk_token) for i in ids]

    # -- long texts ------------------------------------------------------------------------

    def splits_before(self, ch: str) -> bool:
        """Whether text can be cut just before `ch`: ids(a + ch + b) == ids(a) + ids(ch + b).

        True when cleaning turns `ch` into a space or spaces it out (" \\t\\n\\r", Zs; CJK with
        tokenize_chinese_chars) and no special token contains it. Then no special token can
        match across the cut, and the cleaned text holds a " " there, which every later step
        respects: NFC (a space neither composes with its neighbours nor lets marks be reordered
        across it), lower-casing (a space is neither cased nor case-ignorable, so a final
        sigma's context stops at it), NFD and mark stripping (per character, reordering stops
        at a starter), punctuation splitting (per character) and the whitespace split that
        every word-level step (never_split, WordPiece, the 100-character limit) works within.
        The ASCII fast path and the per-word path compute the same words as the general one."""
        value = self._clean[ord(ch)]
        return isinstance(value, str) and value[:1] == " " and ch not in self._special_chars

    def _cut_in(self, text: str, start: int, stop: int) -> int | None:
        """The first position in [start, stop) where text can be cut, or None (also when the
        first CUT_TRIES candidates there are all refused)."""
        for tries, match in enumerate(self._cut_candidates.finditer(text, start, stop)):
            if tries == CUT_TRIES:
                break
            if self.splits_before(match.group()):
                return match.start()
        return None

    def leading_ids(self, text: str, count: int, first_chars: int | None = None) -> list[int]:
        """Token ids that begin with text_ids(text)[:count] (all of text_ids(text) when it has
        fewer), tokenizing only a prefix of a long text.

        Prefixes end at a cut (`splits_before`) found in [size, 2 * size) characters, size
        starting at `first_chars` (default PREFIX_CHARS_PER_ID per id, + 64) and growing
        PREFIX_GROWTH times until a prefix yields `count` ids; the whole text is the fallback
        (a text without a cut, or with fewer ids). The work stays proportional to the prefix
        that is needed: a 5M-character text costs what its first few thousand characters do."""
        if count <= 0:
            return []
        size = PREFIX_CHARS_PER_ID * count + 64 if first_chars is None else max(1, first_chars)
        while size < len(text):
            cut = self._cut_in(text, size, min(len(text), 2 * size))
            if cut is not None:
                ids = self.text_ids(text[:cut])
                if len(ids) >= count:
                    return ids
            size *= PREFIX_GROWTH
        return self.text_ids(text)

    # -- batches ---------------------------------------------------------------------------

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """[CLS] ids [SEP], the ids truncated so the whole fits in max_length (only as much of
        the text is tokenized as that needs)."""
        if max_length is None:
            ids = self.text_ids(text)
        else:
            if max_length < 2:
                raise ValueError(f"max_length must be at least 2 (room for [CLS] and [SEP]), got {max_length}")
            ids = self.leading_ids(text, max_length - 2)
            del ids[max_length - 2:]
        return [self.cls_id] + ids + [self.sep_id]

    def encode_batch(self, texts, max_length: int | None = None) -> dict[str, np.ndarray]:
        """Encode, truncate and pad to the longest in the batch -> int64 arrays (n, seq).
        `texts` is a list (any iterable) of str; a bare str is a TypeError."""
        rows = [self.encode(text, max_length) for text in check_texts(texts)]
        return pad_batch(rows, self.pad_id)


def pad_batch(rows: list[list[int]], pad_id: int) -> dict[str, np.ndarray]:
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))       # (n,)
    seq = int(lengths.max()) if len(rows) else 0
    attention_mask = (np.arange(seq) < lengths[:, None]).astype(np.int64)         # (n, seq)
    input_ids = np.full((len(rows), seq), pad_id, dtype=np.int64)
    input_ids[attention_mask.astype(bool)] = np.fromiter(
        (i for row in rows for i in row), dtype=np.int64, count=int(lengths.sum()))
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "token_type_ids": np.zeros_like(input_ids)}
