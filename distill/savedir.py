"""Atomic output directories and the provenance every report carries."""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import platform
import re
import shutil
import tempfile
import time
import unicodedata
from pathlib import Path


try:
    import fcntl
except ImportError:          # Windows: runs are not locked (see output_lock)
    fcntl = None


class OutputExistsError(Exception):
    """The output directory exists and --force was not given."""


class OutputLockedError(OutputExistsError):
    """Another run is writing the same output."""


def check_writable_target(out: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any training) when `out` cannot be written. Creates nothing: missing
    parent directories are made only when the output is written."""
    out = Path(out)
    if out.exists() and not force:
        raise OutputExistsError(f"{out} already exists; pass --force to replace it")
    ancestor = existing_ancestor(out)
    if not ancestor.is_dir():
        raise NotADirectoryError(f"cannot write {out}: {ancestor} is a file")
    probe_writable(ancestor)
    return out


def existing_ancestor(path: Path) -> Path:
    """The nearest folder above `path` that exists (or a file standing where one should be)."""
    ancestor = Path(path).absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    return ancestor


def probe_writable(directory: Path) -> None:
    """PermissionError unless a folder can be made in `directory`. A real probe: os.access says
    yes to root on a read-only mount, and to anyone on Windows (it ignores ACLs)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".distill-probe-", dir=directory))
    except OSError as error:
        raise PermissionError(f"cannot write into {directory} ({error.strerror or error})") from None


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
        same = target == source or _same_directory_on_disk(target, source, parents=False)
        if same or target in source.parents or _same_directory_on_disk(target, source):
            raise OutputExistsError(f"--out {out} {'is' if same else 'holds'} {option} {path}: "
                                    "choose another output")


def _same_directory_on_disk(target: Path, source: Path, parents: bool = True) -> bool:
    """target is source (or, with parents, one of its folders) by the file system's own judgement:
    on a case-insensitive disk (macOS, Windows) `Teacher` and `teacher` are one folder that
    resolve() leaves spelt two ways."""
    if not target.exists():
        return False
    candidates = [source, *source.parents] if parents else [source]
    try:
        return any(os.path.samefile(target, candidate) for candidate in candidates)
    except OSError:
        return False


def first_rank() -> bool:
    """This process is the only one, or rank 0 of a torchrun launch (the one that writes OUT)."""
    return int(os.environ.get("RANK", "0")) == 0


_HELD: set[Path] = set()       # outputs whose lock this process holds (output_lock is re-entrant)


@contextlib.contextmanager
def output_lock(out: str | os.PathLike):
    """Hold OUT's lock, the file `.NAME.lock` beside it, while this run writes OUT: a second run
    on the same OUT (two `teach --force`, two pipelines) stops at once with an error naming the
    first, rather than deleting its checkpoints or temporary directory under it. The lock is a
    POSIX advisory lock (fcntl.flock), so a killed run (even SIGKILL) releases it; on acquiring it,
    temporary and old directories that a killed run left beside OUT are removed. Taken by the
    first rank of a torchrun launch only; re-entrant within a process; no lock without fcntl
    (Windows). Parent directories made for the lock are removed again if the run leaves them empty."""
    out = Path(out).absolute()
    key = Path(os.path.realpath(out.parent)) / out.name       # one key for every spelling of OUT
    if fcntl is None or key in _HELD or not first_rank():
        yield
        return
    path = out.parent / f".{out.name}.lock"
    created = []
    try:
        created = _make_parents(out.parent)
        handle = _acquire(path, out)
    except OSError:                     # OUT cannot be written: the run's own check says why
        _remove_empty(created)
        yield
        return
    except BaseException:
        _remove_empty(created)
        raise
    _HELD.add(key)
    try:
        remove_stale_siblings(out)
        yield
    finally:
        _HELD.discard(key)
        path.unlink(missing_ok=True)   # while still held: a run that opened it before will find it gone
        handle.close()
        _remove_empty(created)


def _acquire(path: Path, out: Path):
    """Lock `path` (created if missing) without waiting; OutputLockedError when another run holds it."""
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another run"
            handle.close()
            raise OutputLockedError(f"{out} is being written by {holder} (lock {path}); "
                                    "wait for it to finish or choose another output") from None
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:                        # not a file the last holder unlinked while we opened it
            handle.truncate(0)
            handle.write(f"pid {os.getpid()} on {platform.node()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            handle.flush()
            return handle
        handle.close()


def _make_parents(directory: Path) -> list[Path]:
    """mkdir -p; returns the directories it made, outermost first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for made in reversed(missing):
        made.mkdir(exist_ok=True)
    return list(reversed(missing))


def _remove_empty(created: list[Path]) -> None:
    for directory in reversed(created):
        try:
            directory.rmdir()
        except OSError:                 # not empty (the output is there) or already gone
            return


def remove_stale_siblings(out: Path) -> list[Path]:
    """Remove the hidden `.NAME.tmp-*` and `.NAME.old-PID` directories beside OUT. Called with
    OUT's lock held, when no live run can own them: they are what a killed run left. A run killed
    between its two renames left no OUT and the replaced output as `.NAME.old-PID`: that is put
    back as OUT, not removed."""
    nfc = functools.partial(unicodedata.normalize, "NFC")
    pattern = re.compile(rf"\.{re.escape(nfc(out.name))}\.(tmp-[a-z0-9_]{{8}}|old-\d+)")

    def ours(path: Path) -> bool:
        """Named for OUT: exactly, or, where the disk keeps names in another normal form (macOS
        HFS+ stores NFD), a name that OUT's own spelling opens (not a sibling `café` typed in NFD
        on a disk that keeps both apart: that is another output)."""
        match = pattern.fullmatch(nfc(path.name))
        if not match or not (path.is_dir() or path.is_symlink()):
            return False
        spelt = out.parent / f".{out.name}.{match.group(1)}"
        return path.name == spelt.name or (spelt.exists() and os.path.samefile(spelt, path))

    stale = sorted((p for p in out.parent.iterdir() if ours(p)), key=lambda p: p.lstat().st_mtime)
    replaced = [p for p in stale if ".old-" in p.name]
    if replaced and not out.exists() and not out.is_symlink():
        os.replace(replaced[-1], out)
        stale.remove(replaced[-1])
    for path in stale:
        remove_path(path)
    return stale


def remove_path(path: Path) -> None:
    """A directory tree, or a symlink itself (an OUT that was a symlink is moved aside as one;
    rmtree refuses symlinks and, errors ignored, left it for every later run)."""
    if path.is_symlink():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


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
    out = Path(out)
    with output_lock(out):              # may put back an output a killed run had moved aside
        check_writable_target(out, force)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private (0700); an output is not
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = None
        try:
            if out.exists():
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                os.replace(out, old)
            os.replace(tmp, out)
        except BaseException:      # a rename refused (Windows: a file under it is open): as before
            if old is not None and not out.exists():
                os.replace(old, out)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old is not None:
            remove_path(old)


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
