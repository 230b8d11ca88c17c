"""On-disk cache of teacher logits (and of the augmented texts they score).

One entry per part of the student's training data (labelled rows, augmented texts, unlabelled
texts), keyed by everything that decides its contents (DESIGN.md "Caches"): the teacher weights
hash, the data file hash and a hash of the exact source texts (so subsets and column choices
count), the augmentation settings, and max_length. Layout:

    CACHE_DIR/teacher-logits/<key>/meta.json   # the key fields, row count, creation time
                                  texts.json  # the scored texts, in order
                                  logits.npy  # float32 (n, n_labels)

Entries are written to a temporary sibling and renamed, so a killed run leaves no half entry.
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


def weights_sha256(model_dir) -> str:
    """SHA-256 over the weight files of a model directory (names and bytes, sorted by name)."""
    files = sorted({p for pattern in WEIGHT_FILES for p in Path(model_dir).glob(pattern) if p.is_file()})
    if not files:
        raise FileNotFoundError(f"{model_dir}: no weight files ({', '.join(WEIGHT_FILES)})")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
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
            if entry.exists():
                shutil.rmtree(entry, ignore_errors=True)
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
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
