"""What a pipeline run remembers between runs: per stage, the fingerprint of its inputs and a
digest of its output, in OUT/pipeline.json.

A stage is skipped when the fingerprint of its last finished run equals the current one (same
settings, same input files, same upstream outputs) and its output is still the one it wrote
(same digest). A run that starts, fails or is interrupted keeps that finished record (under
`last_done`), so a failed attempt with other settings does not cost the stage its skip. A stage's
status is "running" while it runs (and after an interruption that gave it no chance to write),
"failed" with the error after it raised, "done" once finished. A stage that started with the same
fingerprint but did not finish is resumed from its last training checkpoint where it has one.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from .savedir import current_umask

STATE_FILE = "pipeline.json"
FORMAT = 1


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def fingerprint(inputs: dict) -> str:
    return hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()


def path_digest(path) -> str | None:
    """SHA-256 over a file, or over every file under a directory (relative names and bytes,
    sorted); None when the path does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode("utf-8") + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def changed_keys(old: dict | None, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two input dicts (for the progress line)."""
    if old is None:
        return []
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            keys += changed_keys(a, b, name + ".")
        elif canonical_json(a) != canonical_json(b):
            keys.append(name)
    return keys


class PipelineState:
    """OUT/pipeline.json: {"format": 1, "stages": {name: record}}; written atomically."""

    def __init__(self, out):
        self.path = Path(out) / STATE_FILE
        self.stages: dict = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if data.get("format") == FORMAT:
                    self.stages = data.get("stages", {})
            except (ValueError, UnicodeDecodeError):
                self.stages = {}      # unreadable state: every stage reruns

    def get(self, stage: str) -> dict | None:
        """The stage's latest record: its last attempt, finished or not."""
        return self.stages.get(stage)

    def last_done(self, stage: str) -> dict | None:
        """The record of the stage's last finished run, also while a later attempt runs or failed."""
        record = self.get(stage)
        if record is None:
            return None
        return record if record.get("status") == "done" else record.get("last_done")

    def start(self, stage: str, stage_fingerprint: str, inputs: dict) -> None:
        done = self.last_done(stage)
        self.stages[stage] = {"status": "running", "fingerprint": stage_fingerprint, "inputs": inputs,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                              **({"last_done": done} if done else {})}
        self.save()

    def finish(self, stage: str, digest: str | None, seconds: float, summary: dict) -> None:
        record = self.stages[stage]
        record.pop("last_done", None)
        record.update(status="done", digest=digest, seconds=round(seconds, 2), summary=summary,
                      finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.save()

    def fail(self, stage: str, error: str, seconds: float) -> None:
        """The attempt raised: its record says so, keeping the last finished run under last_done."""
        self.stages[stage].update(status="failed", error=error, seconds=round(seconds, 2),
                                  failed=time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pipeline.", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"format": FORMAT, "stages": self.stages}, f, indent=2, ensure_ascii=False, default=str)
                f.write("\n")
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it private (0600); an output is not
            os.replace(tmp, self.path)               # (os.fchmod: not on Windows before Python 3.13)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def is_current(self, stage: str, stage_fingerprint: str, output) -> bool:
        done = self.last_done(stage)
        return bool(done and done.get("fingerprint") == stage_fingerprint
                    and done.get("digest") is not None and path_digest(output) == done["digest"])

    def why_run(self, stage: str, stage_fingerprint: str, inputs: dict, output) -> str:
        """A short reason for the progress line; changes are named against the last finished run."""
        record = self.get(stage)
        if record is None:
            return "first run"
        if record.get("status") != "done" and record.get("fingerprint") == stage_fingerprint:
            return "failed last time" if record.get("status") == "failed" else "interrupted"
        compared = self.last_done(stage) or record
        if compared.get("fingerprint") != stage_fingerprint:
            changed = changed_keys(compared.get("inputs"), inputs)
            listed = ", ".join(changed[:6]) + (" ..." if len(changed) > 6 else "")
            return "changed: " + (listed if changed else "inputs")
        if not Path(output).exists():
            return "output missing"
        return "output changed"
