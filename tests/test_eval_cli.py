"""`distill eval` on the command line: output paths checked before evaluating, skipped rows in
the summary, clean errors for unusable data files and damaged bundles."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from tiny import make_reviews, write_csv  # noqa: E402


@pytest.fixture(scope="module")
def bundle(_tiny_model_master, tmp_path_factory):
    """An fp32 bundle of the tiny model (a few seconds: few parity samples)."""
    from export.cli import ExportSettings, export_bundle

    out = tmp_path_factory.mktemp("eval-cli") / "bundle"
    export_bundle(ExportSettings(model_dir=str(_tiny_model_master), out=str(out), samples=8),
                  log=lambda message: None)
    return out


def run_eval(model, data, *args):
    from distill.cli import main

    return CliRunner().invoke(main, ["eval", str(model), "--data", str(data), *map(str, args)],
                              catch_exceptions=False)


@pytest.fixture
def no_evaluation(monkeypatch):
    """Refusals must come before the model or the data are touched."""
    import distill.evaluation

    def evaluate_path(*args, **kwargs):
        raise AssertionError("evaluated although the command should have stopped first")

    monkeypatch.setattr(distill.evaluation, "evaluate_path", evaluate_path)


# ---------------------------------------------------------------- --json and --plot

def test_missing_parent_folders_of_json_and_plot_are_created(bundle, tmp_path):
    data = write_csv(tmp_path / "dev.csv", make_reviews(8, seed=3))
    report, plot = tmp_path / "reports" / "a" / "r.json", tmp_path / "plots" / "b" / "cm.png"
    result = run_eval(bundle, data, "--json", report, "--plot", plot)
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["n"] == 8
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_a_plot_whose_label_names_no_font_draws_says_so(bundle, tmp_path, monkeypatch):
    """The eval summary passes on plot_confusion_matrix's note (label names it had to number)."""
    import distill.metrics

    monkeypatch.setattr(distill.metrics, "_font_families", lambda: ["No Such Font Family"])
    data = write_csv(tmp_path / "dev.csv", make_reviews(8, seed=3))
    plot = tmp_path / "cm.png"
    result = run_eval(bundle, data, "--plot", plot)
    assert result.exit_code == 0, result.output
    assert (f"note: {plot}: no installed font draws aeginopstv; the axes number the labels in id order: "
            "0 = negative, 1 = positive") in result.output


def test_an_output_that_is_the_data_file_or_the_other_output_is_refused(bundle, tmp_path, no_evaluation,
                                                                         monkeypatch):
    data = write_csv(tmp_path / "dev.csv", make_reviews(8, seed=3))
    before = data.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.csv").symlink_to(data)
    monkeypatch.chdir(tmp_path)
    for args, words in [(["--json", data], f"--json {data} is the same file as --data {data}"),
                        (["--plot", data], f"--plot {data} is the same file as --data"),
                        (["--json", "sub/../dev.csv"], "--json sub/../dev.csv is the same file as --data"),
                        (["--plot", "link.csv"], "--plot link.csv is the same file as --data"),
                        (["--json", "out/r.x", "--plot", "out/sub/../r.x"],
                         "--plot out/sub/../r.x is the same file as --json out/r.x")]:
        result = run_eval(bundle, data, *args)
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: ") and words in result.output, result.output
        assert data.read_bytes() == before
    assert not (tmp_path / "out").exists()


def test_an_output_under_a_file_is_refused_before_evaluating(bundle, tmp_path, no_evaluation):
    data = write_csv(tmp_path / "dev.csv", make_reviews(8, seed=3))
    report = tmp_path / "r.json"
    result = run_eval(bundle, data, "--json", report, "--plot", data / "cm.png")
    assert result.exit_code == 1, result.output
    assert f"Error: --plot: cannot write {data / 'cm.png'}: {data} is a file" in result.output
    assert not report.exists()


# ---------------------------------------------------------------- the summary

def test_the_summary_says_how_many_rows_were_skipped_and_why(bundle, tmp_path):
    rows = make_reviews(16, seed=3) + [("a trip to the moon", "unknown")]
    data = write_csv(tmp_path / "dev.csv", rows)
    report = tmp_path / "r.json"
    result = run_eval(bundle, data, "--skip-bad-rows", "--json", report)
    assert result.exit_code == 0, result.output
    assert f"{bundle} on {data} (onnxruntime, 16 rows; skipped 1 row: 1 unknown label)" in result.output
    assert json.loads(report.read_text())["skipped"] == {"unknown label": 1}
    clean = run_eval(bundle, write_csv(tmp_path / "clean.csv", rows[:16]))
    assert "(onnxruntime, 16 rows)" in clean.output and "skipped" not in clean.output


# ---------------------------------------------------------------- unusable inputs

def test_a_utf16_data_file_is_a_clear_error(bundle, tmp_path):
    data = tmp_path / "u.tsv"
    data.write_bytes("text\tlabel\r\nbook a flight\tbook\r\n".encode("utf-16"))
    result = run_eval(bundle, data)
    assert result.exit_code == 1
    assert f"Error: {data}: the file is UTF-16" in result.output and "save it as UTF-8" in result.output


def _damage(bundle, tmp_path, file, content: bytes | None) -> Path:
    copy = Path(shutil.copytree(bundle, tmp_path / "damaged"))
    target = copy / file
    target.write_bytes(target.read_bytes()[:1000] if content is None else content)
    return copy


@pytest.mark.parametrize("engine", ["onnxruntime", "numpy"])
@pytest.mark.parametrize("file, content, reason", [
    ("runtime.json", b'{"format": 1}', "'labels' must be a non-empty list of distinct, non-empty strings"),
    ("runtime.json", b"not json", "not valid JSON"),
    ("runtime.json", b"[1, 2]", "expected a JSON object"),
    ("model.onnx", None, ""),          # truncated
    ("model.onnx", b"", ""),           # empty
])
def test_a_damaged_bundle_is_an_error_naming_the_file(bundle, tmp_path, engine, file, content, reason):
    damaged = _damage(bundle, tmp_path, file, content)
    data = write_csv(tmp_path / "dev.csv", make_reviews(8, seed=3))
    result = run_eval(damaged, data, "--engine", engine)   # catch_exceptions=False: no traceback
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {damaged / file}: {reason}"), result.output
    assert "ONNXRuntimeError" not in result.output


@pytest.mark.parametrize("removed, kept", [("model.onnx", "runtime.json"), ("runtime.json", "model.onnx")])
def test_a_bundle_missing_one_of_its_files_is_called_an_incomplete_bundle(bundle, tmp_path, removed, kept):
    """The bundle's copied config.json made it look like a model directory: 'cannot load its
    weights (no file named model.safetensors ...)'."""
    damaged = Path(shutil.copytree(bundle, tmp_path / "damaged"))
    (damaged / removed).unlink()
    data = write_csv(tmp_path / "dev.csv", make_reviews(8, seed=3))
    for engine in ("auto", "numpy"):
        result = run_eval(damaged, data, "--engine", engine)
        assert result.exit_code == 1 and result.output == (
            f"Error: {damaged}: an edge bundle without {removed} ({kept} is there): incomplete; export it "
            "again\n"), result.output


def test_a_model_directory_with_an_onnx_file_beside_its_weights_is_still_a_model_directory(
        bundle, _tiny_model_master, tmp_path):
    model = Path(shutil.copytree(_tiny_model_master, tmp_path / "model"))
    shutil.copy(bundle / "model.onnx", model / "model.onnx")
    data = write_csv(tmp_path / "dev.csv", make_reviews(8, seed=3))
    result = run_eval(model, data)
    assert result.exit_code == 0 and "(torch, 8 rows)" in result.output, result.output


def test_a_bundle_given_where_a_model_directory_belongs_is_named_as_such(bundle, tmp_path):
    from distill.cli import main

    data = write_csv(tmp_path / "dev.csv", make_reviews(16, seed=3))
    said = f"{bundle}: an edge bundle (runtime.json), not a model directory: give the directory"
    for args, prefix in ((["export", "onnx", bundle, "--out", tmp_path / "b"], "Error: "),
                         (["student", "--teacher", bundle, "--train", data, "--out", tmp_path / "s", "--quiet"],
                          "Error: --teacher ")):
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 1 and prefix + said in result.output, (args, result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.csv"]


# ---------------------------------------------------------------- --batch-size and the data options

@pytest.fixture
def fed_batch_sizes(monkeypatch):
    """The size of every batch an engine runs: torch and onnxruntime take their batches from
    distill.predict.length_sorted_batches, the numpy runtime runs each through Classifier._run_batch."""
    import distill.predict
    from runtime.classifier import Classifier

    sizes = []
    batches, run_batch = distill.predict.length_sorted_batches, Classifier._run_batch

    def spy_batches(lengths, batch_size):
        made = batches(lengths, batch_size)
        sizes.extend(len(batch) for batch in made)
        return made

    def spy_run_batch(self, rows):
        sizes.append(len(rows))
        return run_batch(self, rows)

    monkeypatch.setattr(distill.predict, "length_sorted_batches", spy_batches)
    monkeypatch.setattr(Classifier, "_run_batch", spy_run_batch)
    return sizes


@pytest.mark.parametrize("engine", ["onnxruntime", "numpy", "torch"])
def test_batch_size_sets_the_batches_every_engine_runs(bundle, _tiny_model_master, tmp_path, fed_batch_sizes,
                                                       engine):
    model = _tiny_model_master if engine == "torch" else bundle
    data = write_csv(tmp_path / "dev.csv", make_reviews(8, seed=3))
    result = run_eval(model, data, "--engine", engine, "--batch-size", 3)
    assert result.exit_code == 0, result.output
    assert f"({engine}, 8 rows)" in result.output
    assert fed_batch_sizes == [3, 3, 2]


def test_the_data_options_read_a_file_only_they_describe(bundle, tmp_path):
    """JSON lines under an extension that names no format, other keys than text/label, integer
    labels named by a file in an order that is not the model's: each option is needed to read it."""
    rows = make_reviews(8, seed=3)[:7]                  # 4 negative, 3 positive
    ids = {"positive": 0, "negative": 1}                 # the names file's order, not the model's
    data = tmp_path / "dev.data"
    data.write_text("".join(json.dumps({"review": text, "sentiment": ids[label]}) + "\n" for text, label in rows),
                    encoding="utf-8")
    names = tmp_path / "names.txt"
    names.write_text("positive\nnegative\n", encoding="utf-8")
    report = tmp_path / "r.json"
    result = run_eval(bundle, data, "--format", "jsonl", "--text-column", "review", "--label-column", "sentiment",
                      "--label-names", names, "--json", report)
    assert result.exit_code == 0, result.output
    written = json.loads(report.read_text())
    assert written["n"] == 7 and written["labels"] == ["negative", "positive"]
    assert {name: scores["support"] for name, scores in written["per_class"].items()} == {"negative": 4, "positive": 3}


def test_default_batch_is_the_exports_and_the_runtimes(bundle, tmp_path, fed_batch_sizes):
    """An int8 bundle quantizes its activations per batch: eval's default batch (32) is the one
    `export onnx --eval` checks with and runtime.Classifier predicts with."""
    from export.cli import VALIDATION_BATCH
    from runtime.classifier import Classifier

    data = write_csv(tmp_path / "dev.csv", make_reviews(40, seed=3))
    assert run_eval(bundle, data, "--engine", "numpy").exit_code == 0
    assert fed_batch_sizes == [32, 8]
    assert VALIDATION_BATCH == Classifier.load(bundle).batch_size == 32


def test_torch_is_refused_for_a_bundle(bundle, tmp_path):
    data = write_csv(tmp_path / "dev.csv", make_reviews(4, seed=3))
    result = run_eval(bundle, data, "--engine", "torch")
    assert result.exit_code == 1
    assert f"{bundle} is an ONNX bundle: use --engine onnxruntime or numpy" in result.output
