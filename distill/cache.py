"""On-disk cache of teacher logits (and of the augmented texts they score).

One entry per part of the student's training data (labelled rows, augmented texts, unlabelled
texts), keyed by everything that decides its contents (DESIGN.md "Caches"): the hash of the
teacher's weight and tokenizer files, the data file hash and a hash of the exact source texts
(so subsets and column choices count), the augmentation settings, max_length, and how the
teacher scored (batch size and torch's thread count: each moves logits in the last bits). Layout:

    CACHE_DIR/teacher-logits/<key>/meta.json   # the key fields, row count, creation time
                                  texts.json  # the scored texts, in order
                                  logits.npy  # float32 (n, n_labels)

Entries are written to a temporary sibling and renamed, so a killed run leaves no half entry;
when another run renames the same entry into place first, its copy is kept (same key, same contents).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

FORMAT = 1
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "model*.bin")
TOKENIZER_FILES = ("vocab.txt", "vocab.json", "merges.txt", "*.model", "tokenizer.json",
                   "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
CONFIG_FILES = ("config.json",)   # the architecture the weights run in (activation, epsilon, ...)


def default_cache_dir() -> Path:
    return Path(os.environ.get("DISTILL_CACHE_DIR", Path.home() / ".cache" / "distill-edge"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def texts_sha256(texts) -> str:
    """Hash of an ordered list of texts (length-prefixed, so ['ab'] != ['a', 'b'])."""
    digest = hashlib.sha256()
    for text in texts:
        raw = text.encode("utf-8")
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
    return digest.hexdigest()


def _files(model_dir, patterns) -> list[Path]:
    return sorted({p for pattern in patterns for p in Path(model_dir).glob(pattern) if p.is_file()})


def weights_sha256(model_dir) -> str:
    """SHA-256 over what decides a model directory's logits for a text: its weight files, its
    config.json and the tokenizer files present (names, sizes and bytes, sorted by name), so
    editing only the tokenizer (vocab.txt, do_lower_case, ...) or the config gives another hash."""
    weights = _files(model_dir, WEIGHT_FILES)
    if not weights:
        raise FileNotFoundError(f"{model_dir}: no weight files ({', '.join(WEIGHT_FILES)})")
    digest = hashlib.sha256()
    for path in sorted(set(weights) | set(_files(model_dir, TOKENIZER_FILES + CONFIG_FILES))):
        name = path.name.encode()
        digest.update(len(name).to_bytes(8, "little") + name + path.stat().st_size.to_bytes(8, "little"))
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def cache_key(fields: dict) -> str:
    """A short stable key from JSON-serialisable fields (order of dict keys does not matter)."""
    text = json.dumps({"format": FORMAT, **fields}, sort_keys=True, ensure_ascii=False, default=str)
    return sha256_bytes(text.encode("utf-8"))[:32]


class LogitsCache:
    """Teacher logits by key. root=None: a cache that never stores (--no-cache)."""

    def __init__(self, root: str | os.PathLike | None):
        self.root = None if root is None else Path(root).expanduser() / "teacher-logits"

    def path(self, key: str) -> Path | None:
        return None if self.root is None else self.root / key

    def get(self, key: str) -> tuple[list[str], np.ndarray] | None:
        entry = self.path(key)
        if entry is None or not (entry / "logits.npy").is_file():
            return None
        try:
            texts = json.loads((entry / "texts.json").read_text(encoding="utf-8"))
            logits = np.load(entry / "logits.npy")
        except (OSError, ValueError):
            return None  # unreadable entry: recompute (and overwrite)
        if logits.ndim != 2 or len(texts) != logits.shape[0]:
            return None
        return texts, logits.astype(np.float32)

    def put(self, key: str, fields: dict, texts: list[str], logits: np.ndarray) -> None:
        entry = self.path(key)
        if entry is None:
            return
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=entry.parent))
        try:
            (tmp / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
            np.save(tmp / "logits.npy", np.asarray(logits, dtype=np.float32))
            meta = {"format": FORMAT, "key": key, "fields": fields, "rows": len(texts),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
            self._publish(tmp, key)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)   # gone already when renamed into place

    def _publish(self, tmp: Path, key: str) -> None:
        """Rename tmp to the entry. An entry that is already complete was written by another run
        meanwhile: the key decides the contents, so it is kept and tmp is dropped."""
        entry = self.path(key)
        if self.get(key) is not None:
            return
        if entry.exists():  # damaged: get() refused it
            shutil.rmtree(entry, ignore_errors=True)
        try:
            os.replace(tmp, entry)
        except OSError:  # "Directory not empty": another run renamed its entry in after the check
            if self.get(key) is None:
                raise


def cached_logits(cache: LogitsCache, fields: dict, make_texts, score) -> dict:
    """Texts and their teacher logits for one part, from the cache or computed and stored.
    make_texts() -> list[str]; score(texts) -> (n, k) float32. Returns {'texts', 'logits',
    'key', 'hit', 'seconds'} (seconds spent making and scoring; 0 on a hit)."""
    key = cache_key(fields)
    found = cache.get(key)
    if found is not None:
        texts, logits = found
        return {"texts": texts, "logits": logits, "key": key, "hit": True, "seconds": 0.0}
    start = time.time()
    texts = list(make_texts())
    logits = np.asarray(score(texts), dtype=np.float32) if texts else np.zeros((0, 0), np.float32)
    cache.put(key, fields, texts, logits)
    return {"texts": texts, "logits": logits, "key": key, "hit": False,
            "seconds": round(time.time() - start, 2)}
