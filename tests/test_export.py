"""export/: ONNX export, int8 quantization, validation, bundle files, engines. The exports run
once per session through the command line (fixtures below); test_export_cli.py holds the fast
command-line checks that stop before exporting."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export import ExportError

sys.path.insert(0, str(Path(__file__).parent))
from tiny import make_reviews, make_tiny_model, write_csv  # noqa: E402


# ---------------------------------------------------------------- shared exports
# Each dynamo export takes ~10-30 s, so the bundles are made once per session, through the
# command line (the fp32 one through `distill export onnx`, the int8 one via export_group).

def train(model_dir, rows, steps: int = 60, lr: float = 1e-3, seed: int = 0) -> None:
    """A few AdamW steps on (text, label) rows, saved in place: enough for the keyword task."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: more threads only contend
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        enc = tokenizer([t for t, _ in rows], padding=True, return_tensors="pt")
        y = torch.tensor([model.config.label2id[label] for _, label in rows])
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        model.train()
        for _ in range(steps):
            idx = torch.randint(0, len(rows), (16,))
            loss = model(**{k: v[idx] for k, v in enc.items()}, labels=y[idx]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.eval().save_pretrained(model_dir)
    finally:
        torch.set_num_threads(threads)


def invoke(group, args):
    from click.testing import CliRunner

    return CliRunner().invoke(group, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="session")
def wide_rows():
    return make_reviews(200, seed=1)


@pytest.fixture(scope="session")
def wide_dev_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("dev") / "dev.csv", make_reviews(100, seed=2))


@pytest.fixture(scope="session")
def trained_wide_model(tmp_path_factory, wide_rows):
    """256 wide, 2 layers, ~700-token vocabulary: weights dominate the file; trained on reviews."""
    model_dir = make_tiny_model(tmp_path_factory.mktemp("wide") / "model", layers=2, hidden=256,
                                heads=4, intermediate=1024)
    train(model_dir, wide_rows)
    return model_dir


@pytest.fixture(scope="session")
def fp32_run(_tiny_model_master, tmp_path_factory):
    """`distill export onnx` of the tiny model over an existing --out (with --force)."""
    from distill.cli import main

    out = tmp_path_factory.mktemp("fp32") / "bundle"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier export")
    result = invoke(main, ["export", "onnx", _tiny_model_master, "--out", out, "--force", "--samples", 24])
    return out, result


@pytest.fixture(scope="session")
def fp32_bundle(fp32_run):
    out, result = fp32_run
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def int8_run(trained_wide_model, wide_dev_csv, tmp_path_factory):
    from export.cli import export_group

    out = tmp_path_factory.mktemp("int8") / "bundle"
    result = invoke(export_group, ["onnx", trained_wide_model, "--out", out, "--int8", "--eval", wide_dev_csv])
    return out, result


@pytest.fixture(scope="session")
def int8_bundle(int8_run):
    out, result = int8_run
    assert result.exit_code == 0, result.output
    return out


def _census(path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _domains(path) -> tuple[set[str], set[str]]:
    import onnx

    model = onnx.load(str(path))
    return {n.domain for n in model.graph.node}, {o.domain for o in model.opset_import}


# ---------------------------------------------------------------- exported graphs

def test_fp32_graph_inputs_outputs_and_single_file(fp32_bundle):
    import onnx

    path = fp32_bundle / "model.onnx"
    model = onnx.load(str(path), load_external_data=False)
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in model.graph.output] == ["logits"]
    for graph_input in model.graph.input:
        assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.INT64
        dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
        assert dims == ["batch", "sequence"]
    from onnx.external_data_helper import uses_external_data
    assert not any(uses_external_data(t) for t in model.graph.initializer)
    assert sorted(p.name for p in fp32_bundle.glob("*.onnx")) == ["model.onnx"]
    assert not list(fp32_bundle.glob("*.data"))


def test_dynamic_axes_match_torch_for_batch_1_and_7_and_every_length(fp32_bundle, _tiny_model_master):
    """fp32 ONNX vs torch within 1e-4 at every length 1..max_length, for a batch of 7 (row 0
    full, the others padded to random lengths) and a batch of 1 (row 0 alone)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from export.validate import ort_session

    max_length = json.loads((fp32_bundle / "runtime.json").read_text())["max_length"]
    model = AutoModelForSequenceClassification.from_pretrained(_tiny_model_master).eval()
    session = ort_session(fp32_bundle / "model.onnx")
    rng = np.random.default_rng(0)
    worst, threads = 0.0, torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for length in range(1, max_length + 1):
            ids = rng.integers(5, model.config.vocab_size, size=(7, length), dtype=np.int64)
            mask = np.ones_like(ids)
            for row in range(1, 7):
                mask[row, rng.integers(1, length + 1):] = 0
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            with torch.inference_mode():
                want = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
            got7 = session.run(["logits"], feeds)[0]
            got1 = session.run(["logits"], {k: v[:1] for k, v in feeds.items()})[0]
            assert got7.shape == (7, 2) and got1.shape == (1, 2)
            worst = max(worst, float(np.abs(got7 - want).max()), float(np.abs(got1 - want[:1]).max()))
    finally:
        torch.set_num_threads(threads)
    assert worst <= 1e-4, worst


def test_export_json_parity_and_settings(fp32_bundle, int8_bundle):
    for bundle in (fp32_bundle, int8_bundle):
        report = json.loads((bundle / "export.json").read_text())
        assert report["parity"]["max_abs_logit_diff"] <= 1e-4
        assert report["parity"]["min_length"] == 1
        assert report["parity"]["max_length"] == report["max_length"]
        assert report["export"]["exporter"] == "torch.onnx.export" and report["export"]["dynamo"] is True
        assert report["export"]["opset"] == 18 and report["opset"]["fp32"] == 18
        assert {"torch", "onnx", "onnxruntime", "transformers"} <= set(report["versions"])
    fp32 = json.loads((fp32_bundle / "export.json").read_text())
    assert fp32["parity"]["source"] == "generated" and fp32["quantization"] is None
    assert fp32["accuracy"] is None and fp32["model_precision"] == "fp32"


def test_bundles_carry_no_exporter_metadata_or_build_machine_paths(fp32_bundle, int8_bundle, _tiny_model_master,
                                                                   tmp_path):
    """The exporter tags every node with a Python stack trace (this checkout's and site-packages'
    absolute paths) and FX text: a shipped file leaked the build machine's directories, and its
    bytes depended on where the export ran."""
    import onnx

    from export.onnx_export import export_fp32, load_classifier

    root = Path(__file__).resolve().parent.parent
    for bundle in (fp32_bundle, int8_bundle):
        data = (bundle / "model.onnx").read_bytes()
        for leak in (str(root), sys.prefix, "stack_trace", "fx_node", "site-packages"):
            assert leak.encode() not in data, (bundle, leak)
        graph = onnx.load(str(bundle / "model.onnx")).graph
        assert not any(item.metadata_props for item in [*graph.node, *graph.input, *graph.output,
                                                        *graph.value_info, *graph.initializer])
    report = json.loads((fp32_bundle / "export.json").read_text())["export"]
    assert report["stripped_metadata_entries"] > len(graph.node)
    model, _, _ = load_classifier(_tiny_model_master)
    export_fp32(model, tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx").read_bytes() == (fp32_bundle / "model.onnx").read_bytes()


def test_export_json_records_int8_settings_only_for_int8_bundles(fp32_bundle, int8_bundle):
    int8_only = ("weight_type", "per_channel", "max_accuracy_drop")
    fp32 = json.loads((fp32_bundle / "export.json").read_text())["settings"]
    int8 = json.loads((int8_bundle / "export.json").read_text())["settings"]
    assert [fp32[k] for k in int8_only] == [None, None, None]
    assert [int8[k] for k in int8_only] == ["quint8", False, 1.0]
    assert fp32["int8"] is False and fp32["samples"] == 24 and int8["int8"] is True


def test_op_types_are_implemented_by_the_numpy_runtime(fp32_bundle, int8_bundle, tmp_path):
    """The test that keeps export and runtime from drifting: every op type of the fp32 graph
    and of int8 graphs in every quantization setting is a key of runtime.ops.OPS."""
    from runtime.ops import OPS

    from export.quantize import quantize_int8

    graphs = {"fp32": fp32_bundle / "model.onnx", "int8 bundle": int8_bundle / "model.onnx"}
    for weight_type in ("qint8", "quint8"):
        for per_channel in (False, True):
            path = tmp_path / f"{weight_type}-{per_channel}.onnx"
            quantize_int8(fp32_bundle / "model.onnx", path, weight_type, per_channel)
            graphs[path.stem] = path
    for name, path in graphs.items():
        missing = _census(path) - set(OPS)
        assert not missing, f"{name}: {sorted(missing)}"
    assert {"MatMulInteger", "DynamicQuantizeLinear", "DequantizeLinear"} <= _census(graphs["int8 bundle"])
    assert "MatMulInteger" not in _census(graphs["fp32"])


def test_graphs_use_only_the_standard_domain(fp32_bundle, int8_bundle):
    for bundle in (fp32_bundle, int8_bundle):
        node_domains, imports = _domains(bundle / "model.onnx")
        assert node_domains <= {"", "ai.onnx"}, node_domains
        assert imports <= {"", "ai.onnx"}, imports


def test_export_json_lists_the_op_census_of_the_written_graph(int8_bundle):
    report = json.loads((int8_bundle / "export.json").read_text())
    assert set(report["ops"]["int8"]) == _census(int8_bundle / "model.onnx")
    assert report["ops_missing_in_runtime"] == {"fp32": [], "int8": []}


def test_onnxruntime_loads_the_bundles_without_warnings(fp32_bundle, int8_bundle):
    code = ("import sys, onnxruntime as ort\n"
            "o = ort.SessionOptions(); o.log_severity_level = 1\n"   # 1 = info and above
            "ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])\n")
    for bundle in (fp32_bundle, int8_bundle):
        done = subprocess.run([sys.executable, "-c", code, str(bundle / "model.onnx")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        logged = [line for line in done.stderr.splitlines() if ":onnxruntime:" in line]
        assert logged, "expected onnxruntime's info log (the capture is not working)"
        warnings = [line for line in logged if "[W:" in line or "[E:" in line]
        assert not warnings, warnings


# ---------------------------------------------------------------- int8

def test_int8_is_below_40_percent_of_fp32_for_a_weight_dominated_model(int8_bundle):
    report = json.loads((int8_bundle / "export.json").read_text())
    int8_bytes = (int8_bundle / "model.onnx").stat().st_size
    assert report["sizes"]["int8_bytes"] == int8_bytes
    assert int8_bytes < 0.40 * report["sizes"]["fp32_bytes"], report["sizes"]
    assert report["model_precision"] == "int8" and report["fp32_graph_kept"] is False
    assert not (int8_bundle / "model-fp32.onnx").exists()


def test_int8_quantization_settings_are_recorded(int8_bundle):
    q = json.loads((int8_bundle / "export.json").read_text())["quantization"]
    assert q["method"] == "onnxruntime.quantization.quantize_dynamic"
    assert q["weight_type"] == "quint8" and q["per_channel"] is False
    assert q["op_types_to_quantize"] == ["MatMul", "Gemm", "Gather"]
    counts = q["quantized"]
    # every weight MatMul/Gemm became a MatMulInteger; the 3 embedding tables are int8
    assert counts["matmul_integer"] == counts["weight_matmuls_fp32"] > 0
    assert counts["gather_int8"] == counts["embedding_gathers_fp32"] == 3


def test_int8_passes_the_accuracy_gate_on_a_trained_model(int8_bundle):
    acc = json.loads((int8_bundle / "export.json").read_text())["accuracy"]
    assert acc["n"] == 100
    assert acc["onnx_fp32"]["accuracy"] >= 0.9                 # the model learned the task
    assert acc["int8_accuracy_drop_points"] <= acc["max_accuracy_drop_points"] == 1.0
    assert acc["onnx_fp32"]["accuracy"] == pytest.approx(acc["torch"]["accuracy"])
    assert acc["label_agreement_int8_vs_fp32"] >= 0.9


def test_quantize_fails_loudly_on_contrib_ops(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from export.quantize import check_standard_ops

    node = helper.make_node("MatMulIntegerToFloat", ["a", "b"], ["c"], domain="com.microsoft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.UINT8, [1])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid("com.microsoft", 1)])
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="com.microsoft:MatMulIntegerToFloat"):
        check_standard_ops(tmp_path / "m.onnx")


# ---------------------------------------------------------------- checks (units)

def test_parity_and_accuracy_checks():
    from export.validate import accuracy_drop_points, check_accuracy_drop, check_parity

    check_parity(1e-4)
    with pytest.raises(ExportError, match="exceeds"):
        check_parity(1.1e-4)
    with pytest.raises(ExportError):
        check_parity(float("nan"))
    check_accuracy_drop(1.0, 1.0)
    # one row of 100 is exactly one point, which a limit of 1 allows
    check_accuracy_drop(accuracy_drop_points({"accuracy": 0.27}, {"accuracy": 0.26}), 1.0)
    assert accuracy_drop_points({"accuracy": 0.9}, {"accuracy": 0.875}) == 2.5
    with pytest.raises(ExportError, match="points below fp32"):
        check_accuracy_drop(1.01, 1.0)


def test_export_refuses_onnx_logits_that_differ_from_torch(_tiny_model_master, tmp_path, monkeypatch):
    """The parity gate compares the ONNX graph with torch: torch logits moved by 1e-3 (ten times
    the limit) fail the export, and nothing is written."""
    from export import validate
    from export.cli import ExportSettings, export_bundle

    real = validate.torch_logits
    monkeypatch.setattr(validate, "torch_logits", lambda *args: real(*args) + np.float32(1e-3))
    with pytest.raises(ExportError, match=r"fp32 ONNX vs torch: max \|logit difference\| 0\.001"):
        export_bundle(ExportSettings(model_dir=str(_tiny_model_master), out=str(tmp_path / "b"), samples=8),
                      log=lambda message: None)
    assert list(tmp_path.iterdir()) == []


def test_missing_runtime_ops_fail_the_export(monkeypatch):
    from export import validate

    monkeypatch.setattr(validate, "runtime_op_types", lambda: {"Add", "MatMul"})
    with pytest.raises(ExportError, match="Erf"):
        validate.check_runtime_ops({"fp32": {"Add": 3, "Erf": 2}, "int8": {"MatMul": 1}})
    assert validate.check_runtime_ops({"fp32": {"Add": 1}}) == {"fp32": []}


def test_generated_parity_texts_reach_max_length(tiny_model_dir):
    from transformers import AutoTokenizer

    from export.validate import edge_rows, encode_rows, generated_texts

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = generated_texts(tokenizer, 16, 40, seed=0)
    lengths = [len(r["input_ids"]) for r in encode_rows(tokenizer, texts, 40)]
    assert len(texts) == 16 and min(lengths) == 3 and max(lengths) == 40
    assert [len(r["input_ids"]) for r in edge_rows(tokenizer, 40)] == [1, 40]


def test_generated_texts_for_a_vocabulary_of_special_tokens_only(tmp_path):
    """A student whose texts were all [UNK] (emoji) trims its vocabulary to the special tokens:
    the export's generated texts drew words from an empty list (IndexError)."""
    from transformers import BertTokenizerFast

    from export.validate import edge_rows, encode_rows, generated_texts

    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    texts = generated_texts(tokenizer, 8, 40, seed=0)
    rows = encode_rows(tokenizer, texts, 40)
    assert max(len(r["input_ids"]) for r in rows) == 40 and {i for r in rows for i in r["input_ids"]} == {1, 2, 3}
    assert [len(r["input_ids"]) for r in edge_rows(tokenizer, 40)] == [1, 40]


def test_inline_external_data(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import uses_external_data

    from export.onnx_export import inline_external_data

    weight = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [weight])
    path = tmp_path / "m.onnx"
    onnx.save_model(helper.make_model(graph), str(path), save_as_external_data=True,
                    location="m.onnx.data", size_threshold=0)
    assert (tmp_path / "m.onnx.data").exists()
    assert inline_external_data(path) is True
    assert not (tmp_path / "m.onnx.data").exists()
    model = onnx.load(str(path), load_external_data=False)
    assert not any(uses_external_data(t) for t in model.graph.initializer)
    np.testing.assert_array_equal(numpy_helper.to_array(model.graph.initializer[0]),
                                  numpy_helper.to_array(weight))
    assert inline_external_data(path) is False


# ---------------------------------------------------------------- runtime.json and files

def test_runtime_json_for_the_uncased_english_model(fp32_bundle, tiny_model_dir):
    runtime = json.loads((fp32_bundle / "runtime.json").read_text())
    assert runtime == {
        "format": 1, "labels": ["negative", "positive"],
        "inputs": ["input_ids", "attention_mask", "token_type_ids"], "output": "logits",
        "max_length": 128,  # tiny model: 128 position embeddings, no training.json
        "tokenizer": {"type": "wordpiece", "lowercase": True, "strip_accents": None,
                      "tokenize_chinese_chars": True, "unk_token": "[UNK]", "cls_token": "[CLS]",
                      "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]",
                      "max_input_chars_per_word": 100},
        "quantization": None,
        "vocab_sha256": hashlib.sha256((fp32_bundle / "vocab.txt").read_bytes()).hexdigest()}
    assert (fp32_bundle / "vocab.txt").read_text() == (tiny_model_dir / "vocab.txt").read_text()


def test_runtime_json_labels_follow_the_model_order(tmp_path):
    """id2label order, not sorted order."""
    from transformers import AutoConfig, AutoTokenizer

    from export.bundle import runtime_config
    from tiny import make_tiny_model

    model_dir = make_tiny_model(tmp_path / "m", labels=("sports", "arts", "news"))
    config = AutoConfig.from_pretrained(model_dir)
    labels = [config.id2label[i] for i in range(config.num_labels)]
    runtime = runtime_config(labels, AutoTokenizer.from_pretrained(model_dir), 64, quantized=True)
    assert runtime["labels"] == ["sports", "arts", "news"]
    assert runtime["quantization"] == "int8-dynamic" and runtime["max_length"] == 64


@pytest.mark.parametrize("lowercase,strip_accents", [(False, None), (True, False)])
def test_runtime_json_for_a_chinese_tokenizer(shared_data, tmp_path, lowercase, strip_accents):
    """Settings read from the tokenizer itself, and the runtime tokenizer built from them gives
    the Hugging Face ids."""
    from transformers import AutoTokenizer, BertTokenizer

    from export.bundle import tokenizer_settings, vocab_lines
    from runtime.tokenizer import WordPieceTokenizer

    vocab_file = shared_data / "vocab" / "bert-base-chinese-vocab.txt"
    BertTokenizer(str(vocab_file), do_lower_case=lowercase, strip_accents=strip_accents,
                  tokenize_chinese_chars=True).save_pretrained(tmp_path / "zh")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "zh")
    settings = tokenizer_settings(tokenizer)
    assert settings == {"type": "wordpiece", "lowercase": lowercase, "strip_accents": strip_accents,
                        "tokenize_chinese_chars": True, "unk_token": "[UNK]", "cls_token": "[CLS]",
                        "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]",
                        "max_input_chars_per_word": 100}
    lines = vocab_lines(tokenizer)
    assert len(lines) == len(vocab_file.read_text(encoding="utf-8").splitlines())
    assert len(set(lines)) == len(lines)
    whole = {token: i for token, i in tokenizer.get_vocab().items() if token.split() == [token]}
    assert len(whole) > 6000 and all(lines[i] == token for token, i in whole.items())
    (tmp_path / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ours = WordPieceTokenizer.from_config(tmp_path / "vocab.txt", settings)
    for text in ["北京大学的学生在2024年说：Hello World!", "体育新闻 NBA 常规赛 Café", "中"]:
        assert ours.encode(text, 32) == tokenizer(text, truncation=True, max_length=32)["input_ids"]


def test_bundle_holds_the_hugging_face_files(int8_bundle, trained_wide_model):
    from transformers import AutoConfig, AutoTokenizer

    names = {p.name for p in int8_bundle.iterdir()}
    assert {"model.onnx", "vocab.txt", "runtime.json", "export.json", "config.json",
            "tokenizer.json", "tokenizer_config.json"} <= names
    config = AutoConfig.from_pretrained(int8_bundle)
    assert config.id2label == AutoConfig.from_pretrained(trained_wide_model).id2label
    tokenizer = AutoTokenizer.from_pretrained(int8_bundle)
    assert tokenizer("a good film")["input_ids"] == \
        AutoTokenizer.from_pretrained(trained_wide_model)("a good film")["input_ids"]
    umask = os.umask(0)
    os.umask(umask)
    assert int8_bundle.stat().st_mode & 0o777 == 0o777 & ~umask   # not mkdtemp's 0700


# ---------------------------------------------------------------- atomic write (units)

def test_staging_leaves_nothing_on_failure_and_replaces_only_on_success(tmp_path):
    from export.bundle import staging

    out = tmp_path / "bundle"
    with pytest.raises(RuntimeError):
        with staging(out, force=False) as tmp:
            (tmp / "model.onnx").write_bytes(b"half")
            raise RuntimeError("killed mid-way")
    assert list(tmp_path.iterdir()) == []

    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staging(out, force=True) as tmp:
            (tmp / "new.txt").write_text("new")
            assert (out / "old.txt").exists()        # still the old bundle while writing
            raise RuntimeError("killed mid-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    with staging(out, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_check_out_dir(tmp_path):
    from export.bundle import check_out_dir

    (tmp_path / "taken").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="already exists; pass --force"):
        check_out_dir(tmp_path / "taken", force=False)
    assert check_out_dir(tmp_path / "taken", force=True) == tmp_path / "taken"
    with pytest.raises(ExportError, match="not a directory"):
        check_out_dir(tmp_path / "file", force=True)
    with pytest.raises(ExportError, match="not a directory"):
        check_out_dir(tmp_path / "file" / "bundle", force=False)
    assert check_out_dir(tmp_path / "new" / "deeper", force=False)
    assert not (tmp_path / "new").exists()              # checking writes nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken"]


# ---------------------------------------------------------------- engines

def test_engines_agree_on_the_fp32_bundle(fp32_bundle):
    from export.engines import bundle_predict_logits, is_bundle

    texts = ["a gripping film", "dull and lifeless", "", "the plot " * 80, "北京 good"]
    onnx_logits = bundle_predict_logits(fp32_bundle, texts, engine="onnxruntime", batch_size=2)
    numpy_logits = bundle_predict_logits(fp32_bundle, texts, engine="numpy", batch_size=3)
    assert onnx_logits.shape == numpy_logits.shape == (5, 2) and onnx_logits.dtype == np.float32
    np.testing.assert_allclose(numpy_logits, onnx_logits, atol=1e-4)
    single = bundle_predict_logits(fp32_bundle, texts[1:2])
    np.testing.assert_allclose(single[0], onnx_logits[1], atol=1e-5)
    assert is_bundle(fp32_bundle) and not is_bundle(fp32_bundle.parent)
    assert bundle_predict_logits(fp32_bundle, []).shape == (0, 2)
    with pytest.raises(ValueError, match="engine"):
        bundle_predict_logits(fp32_bundle, texts, engine="tensorrt")
    with pytest.raises(TypeError):
        bundle_predict_logits(fp32_bundle, "one string")


@pytest.mark.parametrize("bundle_fixture", ["fp32_bundle", "int8_bundle"])
def test_numpy_engine_is_the_numpy_runtime(bundle_fixture, request, monkeypatch):
    """The "numpy" engine (distill eval --engine numpy, the report card's numpy rows) runs
    runtime.Classifier, with onnxruntime unimportable: its agreement with onnxruntime above is
    not onnxruntime compared with itself."""
    from export.engines import bundle_predict_logits
    from runtime import Classifier

    bundle = request.getfixturevalue(bundle_fixture)
    texts = ["a gripping film", "dull and lifeless", "", "the plot " * 80]
    want = Classifier.load(bundle, batch_size=2).logits(texts)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)        # importing it now fails
    np.testing.assert_array_equal(bundle_predict_logits(bundle, texts, engine="numpy", batch_size=2), want)
    with pytest.raises(ImportError):
        bundle_predict_logits(bundle, texts, engine="onnxruntime")


def test_engines_agree_on_the_int8_bundle_batch_by_batch(int8_bundle, wide_rows):
    """Dynamic int8 quantizes activations per batch, so compare with identical batches (size 1).
    (With the default quint8 weights onnxruntime computes the exact integer result; qint8
    would differ by ~0.04 here on AVX2 CPUs without VNNI, see export/quantize.py.)"""
    from export.engines import bundle_predict_logits

    texts = [text for text, _ in wide_rows[:12]]
    a = bundle_predict_logits(int8_bundle, texts, engine="onnxruntime", batch_size=1)
    b = bundle_predict_logits(int8_bundle, texts, engine="numpy", batch_size=1)
    np.testing.assert_allclose(b, a, atol=1e-4)


def test_engines_feed_the_same_batches(int8_bundle, wide_rows, monkeypatch):
    """Both engines sort by length the same way (shortest first, ties in input order): int8
    bundles quantize activations per batch, so `distill eval --engine onnxruntime|numpy` score
    an int8 bundle alike only if the two feed the same batches (30 texts, batches of 4)."""
    import onnxruntime

    import runtime.session
    from export.engines import bundle_predict_logits

    fed = {"onnxruntime": [], "numpy": []}

    def spy(engine, real):
        def run(self, output_names, feeds, *args, **kwargs):
            fed[engine].append(np.asarray(feeds["input_ids"]).tolist())
            return real(self, output_names, feeds, *args, **kwargs)
        return run

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", spy("onnxruntime", onnxruntime.InferenceSession.run))
    monkeypatch.setattr(runtime.session.Session, "run", spy("numpy", runtime.session.Session.run))
    texts = [text for text, _ in wide_rows[:30]]
    texts = [t if i % 3 else f"{t} and then some more words to make it longer" for i, t in enumerate(texts)]
    bundle_predict_logits(int8_bundle, texts, engine="onnxruntime", batch_size=4)
    bundle_predict_logits(int8_bundle, texts, engine="numpy", batch_size=4)
    assert len(fed["onnxruntime"]) == 8 and fed["onnxruntime"] == fed["numpy"]


# ---------------------------------------------------------------- the command's runs

def test_force_replaced_the_existing_bundle_and_the_table_was_printed(fp32_run, int8_run):
    out, result = fp32_run
    assert result.exit_code == 0, result.output
    assert not (out / "stale.txt").exists()
    assert "onnx fp32" in result.output and "every op type is implemented by the numpy runtime" in result.output
    assert f"bundle: {out}" in result.output
    assert not [p for p in out.parent.iterdir() if p.name != "bundle"]      # no temp siblings left
    out8, result8 = int8_run
    assert result8.exit_code == 0, result8.output
    for needle in ("torch", "onnx fp32", "onnx int8", "accuracy drop", "ops int8"):
        assert needle in result8.output


def test_accuracy_gate_refuses_a_model_whose_int8_copy_collapses(trained_wide_model, wide_dev_csv,
                                                                 tmp_path, monkeypatch):
    """One extreme outlier in an unused embedding row ([MASK] never occurs in the texts) leaves
    fp32 unchanged but sets the per-tensor int8 scale so high that every other word embedding
    rounds to 0: int8 can no longer see the words. The export must fail after validation and
    leave no --out (nor any temporary sibling) behind."""
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification

    import export.cli
    from export.cli import export_group

    failed = []

    def spy(*args, **kwargs):
        try:
            return real_export(*args, **kwargs)
        except ExportError as error:
            failed.append(error)
            raise

    real_export = export.cli.export_bundle
    monkeypatch.setattr(export.cli, "export_bundle", spy)
    model_dir = Path(shutil.copytree(trained_wide_model, tmp_path / "outlier"))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[4] = 1000.0     # [MASK]
    model.save_pretrained(model_dir)

    parent = tmp_path / "bundles"
    parent.mkdir()
    result = invoke(export_group, ["onnx", model_dir, "--out", parent / "b", "--int8", "--eval", wide_dev_csv])
    assert result.exit_code != 0
    assert "int8 accuracy is" in result.output and "--max-accuracy-drop 1" in result.output
    assert "onnx int8" in result.output                                  # the table is shown
    assert list(parent.iterdir()) == []
    accuracy = failed[0].report["accuracy"]                 # int8 labels no longer follow fp32's
    assert accuracy["onnx_fp32"]["accuracy"] >= 0.9 and accuracy["label_agreement_int8_vs_fp32"] < 0.8
    assert accuracy["int8_accuracy_drop_points"] == pytest.approx(
        100 * (accuracy["onnx_fp32"]["accuracy"] - accuracy["onnx_int8"]["accuracy"]))


def test_distill_eval_on_a_bundle_with_both_engines(fp32_bundle, tmp_path):
    """`distill eval BUNDLE --data FILE` goes through export.engines; on an fp32 bundle the
    onnxruntime and numpy engines give the same report."""
    from distill.cli import main

    data = write_csv(tmp_path / "dev.csv", make_reviews(30, seed=3))
    reports = {}
    for engine in ("onnxruntime", "numpy"):
        out = tmp_path / f"{engine}.json"
        result = invoke(main, ["eval", fp32_bundle, "--data", data, "--engine", engine, "--json", out])
        assert result.exit_code == 0, result.output
        reports[engine] = json.loads(out.read_text())
    a, b = reports["onnxruntime"], reports["numpy"]
    assert a["n"] == b["n"] == 30 and a["labels"] == ["negative", "positive"]
    assert a["confusion_matrix"] == b["confusion_matrix"]
    assert a["auc"] == pytest.approx(b["auc"], abs=1e-6)


def _eval(bundle_or_model, data, *args):
    from distill.cli import main

    return invoke(main, ["eval", bundle_or_model, "--data", data, *args])


def test_distill_eval_max_length_cuts_bundle_texts_for_both_engines(fp32_bundle, tmp_path):
    """--max-length 3 keeps [CLS] first-word [SEP]: the same logits, and the same report, as the
    first words alone at the bundle's max_length, with either engine."""
    from export.engines import bundle_predict_logits

    rows = make_reviews(30, seed=3)
    data = write_csv(tmp_path / "dev.csv", rows)
    first_words = write_csv(tmp_path / "first.csv", [(text.split()[0], label) for text, label in rows])
    texts = [text for text, _ in rows]
    for engine in ("onnxruntime", "numpy"):
        cut = bundle_predict_logits(fp32_bundle, texts, engine=engine, max_length=3)
        want = bundle_predict_logits(fp32_bundle, [t.split()[0] for t in texts], engine=engine)
        np.testing.assert_allclose(cut, want, atol=1e-6)
        full = bundle_predict_logits(fp32_bundle, texts, engine=engine)
        assert np.abs(cut - full).max() > 5e-5      # the untrained tiny model's logits barely move
        reports = {}
        for name, args in (("cut", [data, "--max-length", 3]), ("first", [first_words]), ("full", [data])):
            result = _eval(fp32_bundle, *args, "--engine", engine, "--json", tmp_path / f"{name}.json")
            assert result.exit_code == 0, result.output
            reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
        assert reports["cut"]["auc"] == pytest.approx(reports["first"]["auc"], abs=1e-9)
        assert reports["cut"]["confusion_matrix"] == reports["first"]["confusion_matrix"]
        assert reports["cut"]["auc"] != pytest.approx(reports["full"]["auc"], abs=1e-9)


def test_distill_eval_refuses_a_max_length_the_bundle_cannot_take(fp32_bundle, tmp_path):
    import shutil

    data = write_csv(tmp_path / "dev.csv", make_reviews(4, seed=3))
    for engine in ("onnxruntime", "numpy"):
        result = _eval(fp32_bundle, data, "--engine", engine, "--max-length", 129)
        assert result.exit_code == 1
        assert "--max-length 129: must lie in 2..128 (the bundle's max_length in runtime.json)" in result.output
    result = _eval(fp32_bundle, data, "--max-length", 1)
    assert result.exit_code == 2 and "Invalid value for '--max-length'" in result.output
    # a runtime.json edited beyond the position embeddings: those are the limit
    bundle = Path(shutil.copytree(fp32_bundle, tmp_path / "edited"))
    runtime = json.loads((bundle / "runtime.json").read_text())
    (bundle / "runtime.json").write_text(json.dumps({**runtime, "max_length": 512}))
    result = _eval(bundle, data, "--max-length", 200)
    assert result.exit_code == 1
    assert "--max-length 200: must lie in 2..128 (the model's max_position_embeddings)" in result.output


def test_distill_eval_refuses_bad_lengths_and_batch_sizes_on_a_model_dir(tiny_model_dir, fp32_bundle, tmp_path):
    data = write_csv(tmp_path / "dev.csv", make_reviews(4, seed=3))
    result = _eval(tiny_model_dir, data, "--max-length", 4096)
    assert result.exit_code == 1
    assert "--max-length 4096: must lie in 2..128 (the model's max_position_embeddings)" in result.output
    for model in (tiny_model_dir, fp32_bundle):
        for size in (0, -1):
            result = _eval(model, data, "--batch-size", size)
            assert result.exit_code == 2, result.output
            assert f"Invalid value for '--batch-size': {size} is not in the range x>=1" in result.output


def test_distill_eval_max_length_cuts_model_dir_texts(tiny_model_dir, tmp_path):
    """On a model directory (torch), --max-length 3 gives the report of the first words alone."""
    rows = make_reviews(30, seed=3)
    data = write_csv(tmp_path / "dev.csv", rows)
    first_words = write_csv(tmp_path / "first.csv", [(text.split()[0], label) for text, label in rows])
    reports = {}
    for name, args in (("cut", [data, "--max-length", 3]), ("first", [first_words]), ("full", [data])):
        result = _eval(tiny_model_dir, *args, "--json", tmp_path / f"{name}.json")
        assert result.exit_code == 0, result.output
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert reports["cut"]["n"] == 30
    assert reports["cut"]["auc"] == pytest.approx(reports["first"]["auc"], abs=1e-9)
    assert reports["cut"]["confusion_matrix"] == reports["first"]["confusion_matrix"]
    assert reports["cut"]["auc"] != pytest.approx(reports["full"]["auc"], abs=1e-9)
