"""One run at a time per output: teach, student, export and pipeline hold OUT's lock while they
write it, and the leftovers of a killed run are cleared (savedir.output_lock)."""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from distill import savedir
from distill.cli import main
from distill.savedir import OutputLockedError, atomic_directory, output_lock
from export.cli import export_group

ROOT = Path(__file__).resolve().parent.parent
HOLD = """
import sys, time
from distill.savedir import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(300)
"""


def hold_in_another_process(out: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_on_an_output_being_written_stops_at_once_and_names_the_first(tiny_model_dir, reviews_csv,
                                                                                  tmp_path):
    """Two `teach --force` on one OUT: the second deleted the first's checkpoints under it."""
    train, dev = reviews_csv
    runs_dir = tmp_path / "runs"
    out = runs_dir / "out"
    holder = hold_in_another_process(out)
    try:
        said = f"{out} is being written by pid {holder.pid} on "
        toml = tmp_path / "p.toml"
        toml.write_text(f'train = "{train}"\neval = "{dev}"\nout = "{out}"\n', encoding="utf-8")
        runs = [
            (main, ["teach", "--model", tiny_model_dir, "--train", train, "--out", out, "--force"]),
            (main, ["teach", "--model", tiny_model_dir, "--train", train, "--out", out, "--few-shot", "prompt"]),
            (main, ["student", "--teacher", tiny_model_dir, "--train", train, "--out", out]),
            (export_group, ["onnx", tiny_model_dir, "--out", out]),
            (main, ["pipeline", "--config", toml]),
        ]
        for group, args in runs:
            result = CliRunner().invoke(group, [str(a) for a in args])
            assert result.exit_code == 1 and said in result.output, (args, result.output)
            assert "Traceback" not in result.output
            assert result.output.strip().count("\n") == 0, result.output   # stopped before any work
            assert sorted(p.name for p in runs_dir.iterdir()) == [".out.lock"], args
        assert (runs_dir / ".out.lock").read_text().startswith(f"pid {holder.pid} on ")
    finally:
        holder.send_signal(signal.SIGKILL)             # the kernel releases a killed run's lock
        holder.wait()
    result = CliRunner().invoke(main, ["teach", "--model", str(tiny_model_dir), "--train", str(train),
                                       "--out", str(out), "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in runs_dir.iterdir()) == [".out.lock", "out"] or \
        sorted(p.name for p in runs_dir.iterdir()) == ["out"]


def test_a_killed_runs_hidden_directories_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    left = [tmp_path / ".out.tmp-k1ll3d_x", tmp_path / ".out.old-4242"]
    others = [tmp_path / ".out.tmp-short", tmp_path / ".other.tmp-abcdefgh", tmp_path / ".out.checkpoints"]
    for directory in left + others:
        directory.mkdir()
        (directory / "f").write_text("x")
    with atomic_directory(out, force=True) as tmp:
        (tmp / "new").write_text("new")
    assert not any(p.exists() for p in left)
    assert all(p.exists() for p in others)               # not a killed run's of this output
    assert sorted(p.name for p in out.iterdir()) == ["new"]


def test_an_output_a_killed_run_had_moved_aside_is_put_back(tmp_path):
    """Killed between its two renames, a --force run left no OUT: the old one is `.OUT.old-PID`
    and the new one, never reported as written, `.OUT.tmp-*`."""
    out = tmp_path / "out"
    (tmp_path / ".out.old-4242").mkdir()
    (tmp_path / ".out.old-4242" / "model").write_text("the earlier output")
    (tmp_path / ".out.tmp-abcdefgh").mkdir()
    with output_lock(out):
        assert (out / "model").read_text() == "the earlier output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(savedir.OutputExistsError, match="already exists; pass --force"):
        with atomic_directory(out):                    # it is an output again: not replaced without force
            pass


def test_the_lock_is_reentrant_and_cleans_up_after_itself(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with output_lock(out):
        lock = tmp_path / "a" / "b" / ".out.lock"
        assert lock.exists()
        with output_lock(out), atomic_directory(out) as tmp:     # the same run: no self-deadlock
            (tmp / "f").write_text("x")
        assert lock.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
    with pytest.raises(RuntimeError):
        with output_lock(tmp_path / "c" / "d" / "out"):
            raise RuntimeError("a run that failed before writing")
    assert not (tmp_path / "c").exists()               # the folders made for its lock are gone


def test_a_held_lock_is_refused_within_one_process_too(tmp_path):
    """flock locks belong to open files, so a library user's two threads or calls conflict too."""
    out = tmp_path / "out"
    with open(tmp_path / ".out.lock", "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OutputLockedError, match=f"{out} is being written by another run"):
            with output_lock(out):
                pass


def test_only_the_first_torchrun_rank_takes_the_lock(tmp_path, monkeypatch):
    """All ranks of one launch write OUT together; rank 0 holds the lock for them."""
    out = tmp_path / "out"
    monkeypatch.setenv("RANK", "1")
    with output_lock(out):
        assert not (tmp_path / ".out.lock").exists()
    monkeypatch.setenv("RANK", "0")
    with output_lock(out):
        assert (tmp_path / ".out.lock").exists()


def test_a_lock_file_unlinked_by_its_last_holder_is_not_taken(tmp_path, monkeypatch):
    """A run that opened `.OUT.lock` just as its holder removed it would lock a file nobody else
    sees; it must open the path again."""
    out = tmp_path / "out"
    lock = tmp_path / ".out.lock"
    real_stat, calls = os.stat, []

    def stat_after_the_holder_left(path, *args, **kwargs):
        if Path(path) == lock:
            calls.append(path)
            if len(calls) == 1:
                os.unlink(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(savedir.os, "stat", stat_after_the_holder_left)
    with output_lock(out):
        monkeypatch.setattr(savedir.os, "stat", real_stat)
        assert len(calls) == 2 and lock.exists()
        with open(lock) as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
