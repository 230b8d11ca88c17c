"""Atomic output directories and the provenance every report carries."""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path


class OutputExistsError(Exception):
    """The output directory exists and --force was not given."""


def check_writable_target(out: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any training) when `out` cannot be written. Creates nothing: missing
    parent directories are made only when the output is written."""
    out = Path(out)
    if out.exists() and not force:
        raise OutputExistsError(f"{out} already exists; pass --force to replace it")
    ancestor = out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"cannot write {out}: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK):
        raise PermissionError(f"cannot write into {ancestor}")
    return out


def check_spares_inputs(out: str | os.PathLike, inputs: dict) -> None:
    """Refuse an output that is one of the inputs ({option: a path, several, or None}) or holds
    one: with --force, replacing it would destroy the model or file the run reads (a student
    written over its teacher, a bundle over its model directory)."""
    target = Path(out).absolute().resolve()
    pairs = [(option, path) for option, paths in inputs.items()
             for path in (paths if isinstance(paths, (list, tuple)) else [paths])]
    for option, path in pairs:
        if path is None or not Path(path).exists():
            continue
        source = Path(path).resolve()
        if target == source or target in source.parents:
            how = "is" if target == source else "holds"
            raise OutputExistsError(f"--out {out} {how} {option} {path}: choose another output")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_directory(out: str | os.PathLike, force: bool = False):
    """Yield a temporary sibling directory; on success rename it to `out`.

    An exception (or a killed process) leaves `out` untouched: never half-written.
    With `force`, an existing `out` is replaced only after the new one is complete.
    """
    out = check_writable_target(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private (0700); an output is not
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_model_dir(out, force: bool, model, tokenizer, max_length: int, report: dict, started: float,
                   complete_report=None) -> None:
    """Write a model directory (DESIGN.md) atomically: weights, tokenizer (its max length set to
    the training one), vocab.txt in id order (transformers 5 writes none for a fast tokenizer), and
    training.json with the wall time. `complete_report(tmp)` may add to the report from the
    written files."""
    tokenizer.model_max_length = max_length
    with atomic_directory(out, force=force) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        from .vocab_trim import write_vocab_txt
        write_vocab_txt(tokenizer, tmp)
        if complete_report is not None:
            complete_report(tmp)
        report["wall_seconds"] = round(time.time() - started, 2)
        write_json(Path(tmp) / "training.json", report)


def library_versions() -> dict:
    """Versions of the libraries that shape a result, for training.json and export.json."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("distill-edge", "torch", "transformers", "accelerate", "numpy", "onnx", "onnxruntime"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Strict JSON (RFC 8259): a NaN or infinite number (a diverged loss, an undefined metric)
    is written as null, since NaN and Infinity are not JSON and strict parsers refuse them."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(strict_json(data), f, indent=2, ensure_ascii=False, allow_nan=False)
        f.write("\n")


def strict_json(value):
    """value with numpy arrays and scalars as lists and numbers, paths as strings, and every
    non-finite float as None."""
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):                 # numpy arrays and scalars, torch tensors
        return strict_json(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dir_size_bytes(path: str | os.PathLike, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in Path(path).glob(pattern) if p.is_file())
