"""`export onnx` command line: help, bad inputs with clear errors and nothing written.
(Successful exports run once per session in test_export.py; one here, at the highest opset.)"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from export.cli import export_group

ROOT = Path(__file__).resolve().parent.parent


def run(args):
    return CliRunner().invoke(export_group, ["onnx", *[str(a) for a in args]])


def test_python_m_export_help_lists_every_option_with_help():
    done = subprocess.run([sys.executable, "-m", "export", "onnx", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Usage: python -m export onnx [OPTIONS] MODEL_DIR" in done.stdout
    for option in ("--out", "--int8", "--weight-type", "--per-channel", "--opset", "--max-length",
                   "--eval", "--max-accuracy-drop", "--samples", "--force", "--text-column"):
        assert option in done.stdout


def test_every_option_has_help_text():
    command = export_group.commands["onnx"]
    for param in command.params:
        if param.param_type_name == "option":
            assert param.help, param.name


def test_help_does_not_import_heavy_libraries():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom export.cli import export_group\n"
            "r = CliRunner().invoke(export_group, ['onnx', '--help'])\nassert r.exit_code == 0\n"
            "print(sorted(m for m in ('torch', 'transformers', 'onnx', 'onnxruntime') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_attached_to_distill():
    from distill.cli import main

    result = CliRunner().invoke(main, ["export", "onnx", "--help"])
    assert result.exit_code == 0 and "--max-accuracy-drop" in result.output


def test_missing_model_dir(tmp_path):
    result = run([tmp_path / "nope", "--out", tmp_path / "b"])
    assert result.exit_code != 0
    assert "does not exist" in result.output
    assert not (tmp_path / "b").exists()


def test_not_a_sequence_classifier(tmp_path):
    from tiny import make_tiny_model

    mlm = make_tiny_model(tmp_path / "mlm", mlm=True)
    result = run([mlm, "--out", tmp_path / "b"])
    assert result.exit_code != 0
    assert "not a sequence classifier" in result.output and "BertForMaskedLM" in result.output
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("labels, said", [(("pos", "pos", "neg"), "repeat 'pos'"),
                                          (("", "neg"), "include an empty name")])
def test_labels_that_repeat_or_are_empty_are_refused(tmp_path, labels, said):
    """An app maps labels back to classes; `python -m runtime` printed two probabilities under
    one 'pos' key."""
    from tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "m", labels=labels)
    result = run([model, "--out", tmp_path / "b"])
    assert result.exit_code == 1 and f"the model's labels (config.json id2label: {list(labels)}) {said}" in result.output
    assert not (tmp_path / "b").exists()


def test_directory_without_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run([tmp_path / "empty", "--out", tmp_path / "b"])
    assert result.exit_code != 0 and "no config.json" in result.output


def test_unwritable_out_dir(tiny_model_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run([tiny_model_dir, "--out", blocker / "bundle"])
    assert result.exit_code != 0 and "cannot create --out" in result.output
    result = run([tiny_model_dir, "--out", "/proc/distill-edge-bundle"])  # read-only even for root
    assert result.exit_code != 0 and "cannot write --out" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "tiny-model"]


def test_existing_out_without_force_is_refused(tiny_model_dir, tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run([tiny_model_dir, "--out", out])
    assert result.exit_code != 0 and "already exists; pass --force" in result.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_bad_max_length_and_samples(tiny_model_dir, tmp_path):
    result = run([tiny_model_dir, "--out", tmp_path / "b", "--max-length", 4096])
    assert result.exit_code != 0 and "must lie in 2..128" in result.output
    result = run([tiny_model_dir, "--out", tmp_path / "b", "--samples", 0])
    assert result.exit_code != 0 and "--samples" in result.output
    result = run([tiny_model_dir, "--out", tmp_path / "b", "--weight-type", "int4"])
    assert result.exit_code != 0
    assert not (tmp_path / "b").exists()


def test_eval_file_with_a_label_the_model_does_not_know(tiny_model_dir, tmp_path):
    from tiny import write_csv

    data = write_csv(tmp_path / "dev.csv", [("a good film", "positive"), ("meh", "neutral")])
    result = run([tiny_model_dir, "--out", tmp_path / "b", "--eval", data])
    assert result.exit_code != 0
    assert "neutral" in result.output and "dev.csv" in result.output
    assert not (tmp_path / "b").exists()


def test_int8_options_without_int8_are_refused(tiny_model_dir, tmp_path):
    """An fp32 export would ignore them; stop before anything is written, default values included."""
    for given, args in ((["--weight-type"], ["--weight-type", "qint8"]),
                        (["--weight-type"], ["--weight-type", "quint8"]),
                        (["--per-channel"], ["--per-channel"]),
                        (["--max-accuracy-drop"], ["--max-accuracy-drop", 5]),
                        (["--weight-type", "--per-channel"], ["--per-channel", "--weight-type", "qint8"])):
        result = run([tiny_model_dir, "--out", tmp_path / "b", *args])
        assert result.exit_code == 1 and "Usage:" not in result.output, result.output     # as teach and student
        assert f"Error: {', '.join(given)}: int8 settings, used only with --int8" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-model"]


def test_options_the_export_would_ignore_are_refused(tiny_model_dir, tmp_path):
    from tiny import write_csv

    data = write_csv(tmp_path / "dev.csv", [("a good film", "positive"), ("a bad film", "negative")])
    for args, message in ((["--int8", "--max-accuracy-drop", 2], "--max-accuracy-drop: compares accuracies "
                                                                  "on --eval, so it needs --eval"),
                          (["--eval", data, "--samples", 8], "--samples: sizes the generated parity sample")):
        result = run([tiny_model_dir, "--out", tmp_path / "b", *args])
        assert result.exit_code == 1 and f"Error: {message}" in result.output, result.output
    assert not (tmp_path / "b").exists()


def test_help_states_the_opset_range():
    from importlib import metadata

    from export.onnx_export import max_opset

    result = CliRunner().invoke(export_group, ["onnx", "--help"])
    text = " ".join(result.output.split())
    assert "18 up to the highest the installed exporter can produce" in text
    if metadata.version("onnxscript").startswith("0.7."):   # the number the help quotes
        assert "(25 with onnxscript 0.7)" in text and max_opset() == 25


def test_an_opset_the_exporter_cannot_produce_is_refused_before_the_model_loads(tiny_model_dir, tmp_path,
                                                                                monkeypatch):
    """Past the exporter's range torch.onnx.export fails only after tracing, with a long onnx
    traceback (26: 'No Op registered for Gelu with domain_version of 18')."""
    from export.onnx_export import max_opset

    def must_not_load(*args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("export.onnx_export.load_classifier", must_not_load)
    newest = max_opset()
    assert 18 <= newest
    for opset in (17, newest + 1, 99):
        result = run([tiny_model_dir, "--out", tmp_path / "b", "--opset", opset])
        assert result.exit_code == 1, result.output
        assert f"--opset {opset}: must lie in 18..{newest} (torch.onnx.export builds opset 18 graphs" \
               in result.output
    assert not (tmp_path / "b").exists()


def test_a_negative_max_accuracy_drop_is_refused_up_front(tiny_model_dir, tmp_path, monkeypatch):
    from tiny import write_csv

    from export import ExportError
    from export.cli import ExportSettings, export_bundle

    def must_not_load(*args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("export.onnx_export.load_classifier", must_not_load)
    data = write_csv(tmp_path / "dev.csv", [("a good film", "positive"), ("a bad film", "negative")])
    result = run([tiny_model_dir, "--out", tmp_path / "b", "--int8", "--eval", data, "--max-accuracy-drop", -5])
    assert result.exit_code == 2 and "--max-accuracy-drop" in result.output and ">=0" in result.output
    with pytest.raises(ExportError, match=r"--max-accuracy-drop -5: must be at least 0"):   # called from code
        export_bundle(ExportSettings(str(tiny_model_dir), str(tmp_path / "b"), int8=True, eval_path=str(data),
                                     max_accuracy_drop=-5))
    assert not (tmp_path / "b").exists()


def test_the_highest_opset_exports_and_the_summary_names_skipped_eval_rows(tiny_model_dir, tmp_path):
    """One export at max_opset() (the bound is not too high) with an eval file whose bad row
    --skip-bad-rows leaves out: the progress and the final summary both say so."""
    import json

    from tiny import write_csv

    from export.onnx_export import max_opset

    rows = [("a good film", "positive"), ("", "negative")] + [("a bad film", "negative")] * 3
    data = write_csv(tmp_path / "dev.csv", rows)
    result = run([tiny_model_dir, "--out", tmp_path / "b", "--eval", data, "--skip-bad-rows",
                  "--opset", max_opset()])
    assert result.exit_code == 0, result.output
    assert f"{data}: skipped 1 row: 1 empty text" in result.output          # progress (stderr)
    assert f"accuracy on 4 rows of {data} (skipped 1 row: 1 empty text)" in result.output   # summary
    report = json.loads((tmp_path / "b" / "export.json").read_text())
    assert report["opset"]["fp32"] == max_opset() and report["accuracy"]["skipped"] == {"empty text": 1}


def test_a_training_max_length_beyond_the_position_table_is_capped_at_it(tiny_model_dir, tmp_path):
    """training.json says 256, the tiny model has 128 position embeddings: the bundle gets 128."""
    import json

    (tiny_model_dir / "training.json").write_text(json.dumps({"config": {"max_length": 256}}))
    result = run([tiny_model_dir, "--out", tmp_path / "b", "--samples", 4])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b" / "runtime.json").read_text())["max_length"] == 128
    report = json.loads((tmp_path / "b" / "export.json").read_text())
    assert report["max_length"] == 128 and report["parity"]["max_length"] == 128


def test_parity_also_compares_the_edge_rows(tiny_model_dir, tmp_path, monkeypatch):
    """torch and ONNX agree on the 8 generated texts and differ by 0.5 only on the edge batch
    (lengths 1 and max_length, plus one real row): the export is refused, nothing written."""
    import numpy as np

    from export import ExportError, validate
    from export.cli import ExportSettings, export_bundle

    real = validate.torch_logits
    monkeypatch.setattr(validate, "torch_logits",
                        lambda model, batches, n: real(model, batches, n) + np.float32(0.5 if n == 3 else 0))
    expected = r"^fp32 ONNX vs torch: max \|logit difference\| 0\.5 exceeds 0\.0001$"
    with pytest.raises(ExportError, match=expected) as info:
        export_bundle(ExportSettings(model_dir=str(tiny_model_dir), out=str(tmp_path / "b"), samples=8),
                      log=lambda message: None)
    assert info.value.report["parity"]["rows"] == 8 + 3
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------- what the options change

def test_per_channel_gives_every_output_channel_of_a_weight_its_own_scale(tiny_model_dir, tmp_path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    result = run([tiny_model_dir, "--out", tmp_path / "b", "--int8", "--per-channel", "--samples", 8])
    assert result.exit_code == 0, result.output
    graph = onnx.load(str(tmp_path / "b" / "model.onnx")).graph
    tables = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    matmuls = [node for node in graph.node if node.op_type == "MatMulInteger"]
    assert len(matmuls) == 14                            # 6 per layer, the pooler, the classifier head
    for node in matmuls:
        weight, zero_point = tables[node.input[1]], tables[node.input[3]]
        scale = tables[node.input[3].removesuffix("_zero_point") + "_scale"]
        outputs = weight.shape[1]                        # MatMul weights are (in, out)
        assert scale.shape == zero_point.shape == (outputs,), node.input[1]
        assert len(np.unique(scale)) == outputs          # not one scale repeated


def test_int8_size_is_reported_as_a_fraction_of_the_fp32_size(tiny_model_dir, tmp_path):
    import json

    result = run([tiny_model_dir, "--out", tmp_path / "b", "--int8", "--samples", 8])
    assert result.exit_code == 0, result.output
    sizes = json.loads((tmp_path / "b" / "export.json").read_text())["sizes"]
    assert sizes["int8_bytes"] == (tmp_path / "b" / "model.onnx").stat().st_size
    fraction = sizes["int8_bytes"] / sizes["fp32_bytes"]
    assert sizes["int8_fraction_of_fp32"] == fraction < 1
    assert f"int8: quint8, per-tensor, {fraction:.1%} of fp32;" in result.output


@pytest.mark.parametrize("weight_type, dtype", [("qint8", "int8"), ("quint8", "uint8")])
def test_weight_type_is_the_type_of_every_quantized_weight(tiny_model_dir, tmp_path, weight_type, dtype):
    import onnx
    from onnx import numpy_helper

    result = run([tiny_model_dir, "--out", tmp_path / "b", "--int8", "--weight-type", weight_type, "--samples", 8])
    assert result.exit_code == 0, result.output
    graph = onnx.load(str(tmp_path / "b" / "model.onnx")).graph
    tables = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    matmuls = [node for node in graph.node if node.op_type == "MatMulInteger"]
    assert len(matmuls) == 14 and {str(tables[node.input[1]].dtype) for node in matmuls} == {dtype}


def test_samples_sets_how_many_generated_texts_the_parity_check_runs(tiny_model_dir, tmp_path):
    import json

    result = run([tiny_model_dir, "--out", tmp_path / "b", "--samples", 5])
    assert result.exit_code == 0, result.output
    assert "torch reference on 5 generated texts + 3 edge rows" in result.output
    parity = json.loads((tmp_path / "b" / "export.json").read_text())["parity"]
    assert parity["source"] == "generated" and parity["rows"] == 5 + 3


@pytest.mark.parametrize("limit, accepted", [(0.25, False), (0.75, True)])
def test_max_accuracy_drop_is_the_limit_the_int8_drop_is_held_to(tiny_model_dir, tmp_path, monkeypatch,
                                                                 limit, accepted):
    """An int8 drop of 0.5 points (below the default limit of 1) is refused under a limit of
    0.25 and accepted under 0.75."""
    import json

    from tiny import make_reviews, write_csv

    monkeypatch.setattr("export.validate.accuracy_drop_points", lambda fp32, int8: 0.5)
    data = write_csv(tmp_path / "dev.csv", make_reviews(8, seed=3))
    result = run([tiny_model_dir, "--out", tmp_path / "b", "--int8", "--eval", data, "--max-accuracy-drop", limit])
    if accepted:
        assert result.exit_code == 0, result.output
        accuracy = json.loads((tmp_path / "b" / "export.json").read_text())["accuracy"]
        assert accuracy["int8_accuracy_drop_points"] == 0.5 and accuracy["max_accuracy_drop_points"] == limit
    else:
        assert result.exit_code == 1, result.output
        assert (f"export failed: int8 accuracy is 0.50 points below fp32, more than --max-accuracy-drop {limit:g}: "
                "bundle not written") in result.output
        assert not (tmp_path / "b").exists()


def test_the_data_options_read_an_eval_file_only_they_describe(tiny_model_dir, tmp_path):
    """JSON lines under an extension that names no format, other keys than text/label, integer
    labels named by a file (in another order than the model's): each option is needed to read it."""
    import json

    from tiny import make_reviews, write_csv

    from distill.evaluation import evaluate_path

    rows = make_reviews(8, seed=3)[:7]                  # 4 negative, 3 positive
    ids = {"positive": 0, "negative": 1}
    data = tmp_path / "dev.data"
    data.write_text("".join(json.dumps({"review": text, "sentiment": ids[label]}) + "\n" for text, label in rows),
                    encoding="utf-8")
    names = tmp_path / "names.txt"
    names.write_text("positive\nnegative\n", encoding="utf-8")
    result = run([tiny_model_dir, "--out", tmp_path / "b", "--eval", data, "--format", "jsonl",
                  "--text-column", "review", "--label-column", "sentiment", "--label-names", names])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b" / "export.json").read_text())
    assert report["parity"]["source"] == "eval" and report["accuracy"]["n"] == 7
    same_rows = evaluate_path(tiny_model_dir, write_csv(tmp_path / "dev.csv", rows), engine="torch")
    assert report["accuracy"]["torch"]["accuracy"] == same_rows["accuracy"]


# ---------------------------------------------------------------- graph checks (units)

def _save_graph(path, nodes, opset_imports):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    imports = [helper.make_opsetid(domain, version) for domain, version in opset_imports]
    onnx.save(helper.make_model(graph, opset_imports=imports), path)
    return path


def test_the_runtime_op_check_tells_a_contrib_op_from_the_standard_one(tmp_path):
    """com.microsoft:Gelu is not the ai.onnx Gelu the numpy runtime implements."""
    from onnx import helper

    from export import ExportError
    from export.validate import check_runtime_ops, op_census, runtime_op_types

    assert "Gelu" in runtime_op_types()
    path = _save_graph(tmp_path / "m.onnx", [helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")],
                       [("", 18), ("com.microsoft", 1)])
    census = op_census(path)
    assert census == {"com.microsoft:Gelu": 1}
    with pytest.raises(ExportError, match=r"does not implement these op types \(fp32: com\.microsoft:Gelu\)"):
        check_runtime_ops({"fp32": census})
    standard = _save_graph(tmp_path / "s.onnx", [helper.make_node("Gelu", ["x"], ["y"])], [("", 20)])
    assert check_runtime_ops({"fp32": op_census(standard)}) == {"fp32": []}


def test_quantize_refuses_a_graph_importing_a_contrib_domain_even_without_contrib_nodes(tmp_path):
    from onnx import helper

    from export import ExportError
    from export.quantize import check_standard_ops

    relu = [helper.make_node("Relu", ["x"], ["y"])]
    path = _save_graph(tmp_path / "m.onnx", relu, [("", 18), ("com.microsoft", 1)])
    with pytest.raises(ExportError, match=r"nodes none, opset imports \['com\.microsoft'\] "
                                          r"\(the numpy runtime runs ai\.onnx only\)"):
        check_standard_ops(path)
    check_standard_ops(_save_graph(tmp_path / "ok.onnx", relu, [("", 18)]))
