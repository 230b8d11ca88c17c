"""Writing outputs (distill/savedir.py): one run at a time per output (teach, student, export and
pipeline hold OUT's lock while they write it; a killed run's leftovers are cleared), atomic
replacement that survives a refused rename, and the checks made before any work."""
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


def test_leftovers_are_found_whatever_normal_form_the_disk_keeps_names_in(tmp_path):
    """macOS's HFS+ stores names decomposed (NFD): a killed run's `.modèle.tmp-*` beside the OUT
    typed as `modèle` (NFC) was not recognised."""
    import unicodedata

    out = tmp_path / unicodedata.normalize("NFC", "modèle")
    left = tmp_path / unicodedata.normalize("NFD", ".modèle.tmp-abcdefgh")
    left.mkdir()
    # HFS+ opens the NFC spelling as the NFD-stored folder: emulated with a link of that name
    (tmp_path / unicodedata.normalize("NFC", ".modèle.tmp-abcdefgh")).symlink_to(left)
    with output_lock(out):
        pass
    assert not left.exists() and list(tmp_path.iterdir()) == []


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


@pytest.mark.parametrize("failing", ["moving the earlier output aside", "moving the new one in"])
def test_a_refused_rename_leaves_the_earlier_output_and_nothing_hidden(tmp_path, monkeypatch, failing):
    """On Windows a folder cannot be renamed while a file under it is open (a notebook holding the
    weights, a virus scanner): the new output stayed hidden in .OUT.tmp-*, and a refusal of the
    second rename left no OUT at all."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "model").write_text("the earlier output")
    real_replace, calls = os.replace, []

    def refusing_replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == (1 if failing == "moving the earlier output aside" else 2):
            raise PermissionError(13, "Access is denied", str(src))
        return real_replace(src, dst)

    monkeypatch.setattr(savedir.os, "replace", refusing_replace)
    with pytest.raises(PermissionError, match="Access is denied"):
        with atomic_directory(out, force=True) as tmp:
            (tmp / "model").write_text("the new output")
    monkeypatch.setattr(savedir.os, "replace", real_replace)
    assert len(calls) == (1 if failing == "moving the earlier output aside" else 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "model").read_text() == "the earlier output"


def test_an_output_spelt_in_another_case_is_still_the_input(tmp_path, monkeypatch):
    """On a case-insensitive disk (macOS, Windows) `Teacher` is the folder `teacher`, and resolve()
    leaves the two spellings apart: --force wrote a student over its teacher. Emulated with a
    symlink that the patched resolve() does not follow, as such a disk does not fold case."""
    from distill.savedir import check_spares_inputs

    teacher = tmp_path / "models" / "teacher"
    teacher.mkdir(parents=True)
    (tmp_path / "models" / "Teacher").symlink_to(teacher)
    (tmp_path / "Models").symlink_to(tmp_path / "models")
    monkeypatch.setattr(Path, "resolve", lambda self, strict=False: self.absolute())
    with pytest.raises(savedir.OutputExistsError, match="is --teacher"):
        check_spares_inputs(tmp_path / "models" / "Teacher", {"--teacher": teacher})
    with pytest.raises(savedir.OutputExistsError, match="holds --teacher"):
        check_spares_inputs(tmp_path / "Models", {"--teacher": teacher})
    check_spares_inputs(tmp_path / "models" / "student", {"--teacher": teacher})


def test_writability_is_probed_not_asked_of_os_access(tmp_path, monkeypatch):
    """os.access says yes to root on a read-only mount and to anyone on Windows."""
    from distill.savedir import check_writable_target

    monkeypatch.setattr(savedir.os, "access", lambda *a, **k: False)
    assert check_writable_target(tmp_path / "a" / "out", force=False) == tmp_path / "a" / "out"
    assert list(tmp_path.iterdir()) == []                     # the probe leaves nothing

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(savedir.tempfile, "mkdtemp", read_only)
    with pytest.raises(PermissionError, match=f"cannot write into {tmp_path} \\(Read-only file system\\)"):
        check_writable_target(tmp_path / "a" / "out", force=False)


def test_the_pipeline_record_is_saved_without_os_fchmod(tmp_path, monkeypatch):
    """os.fchmod exists on Windows only from Python 3.13: the pipeline crashed before its first stage."""
    from distill.pipeline_state import PipelineState

    monkeypatch.delattr(os, "fchmod")
    state = PipelineState(tmp_path / "run")
    state.start("teacher", "abc", {"train": "x"})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["pipeline.json"]
    assert (tmp_path / "run" / "pipeline.json").stat().st_mode & 0o777 == 0o666 & ~savedir.current_umask()
    assert PipelineState(tmp_path / "run").get("teacher")["status"] == "running"


def test_leftovers_of_another_output_spelt_alike_are_left_alone(tmp_path):
    """On a disk that keeps NFC and NFD names apart, `café` and `café` are two outputs with two
    locks: one's run removed the other's live temporary directory."""
    import unicodedata

    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    other = tmp_path / f".{nfd}.tmp-abcdefgh"
    other.mkdir()
    (tmp_path / f".{nfd}.old-999").mkdir()
    with output_lock(tmp_path / nfc):
        pass
    assert other.exists() and (tmp_path / f".{nfd}.old-999").exists() and not (tmp_path / nfc).exists()


def test_two_spellings_of_one_output_share_the_lock_in_one_process(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with output_lock(real / "out"), output_lock(tmp_path / "link" / "out"), output_lock(real / ".." / "real" / "out"):
        pass


def test_a_symlinked_output_replaced_twice_leaves_nothing_behind(tmp_path):
    """The symlink moved aside as .NAME.old-PID was never removed (rmtree refuses symlinks), and
    the next replacement by the same process id failed with NotADirectoryError."""
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "sl").symlink_to(target)
    for round_ in range(2):
        with atomic_directory(tmp_path / "sl", force=True) as tmp:
            (tmp / "f").write_text(str(round_))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sl", "target"]
    assert (tmp_path / "sl" / "f").read_text() == "1" and not (tmp_path / "sl").is_symlink()
