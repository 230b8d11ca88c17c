"""runtime.session.Session: exported tiny BERTs against onnxruntime, load-time checks, safety."""
from __future__ import annotations

import re
import sys
import threading

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnx_models import exported_models, random_feeds
from runtime import onnx as ronnx
from runtime.onnx import ModelError
from runtime.session import FOLD_LIMIT, Session


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return exported_models(tmp_path_factory.mktemp("onnx-models"))


def ort_session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


SHAPES = [(1, 1), (1, 128), (7, 9), (3, 40), (32, 17)]


@pytest.mark.parametrize("name", ["fp32", "ts17"])
def test_fp32_logits_match_onnxruntime(models, name):
    rng = np.random.default_rng(0)
    sess, ref = Session(models[name]), ort_session(models[name])
    for batch, length in SHAPES:
        feeds = random_feeds(rng, batch, length)
        logits, = sess.run(["logits"], feeds)
        want, = ref.run(["logits"], feeds)
        assert logits.shape == want.shape == (batch, 2) and logits.dtype == np.float32
        assert np.abs(logits - want).max() <= 1e-4


@pytest.mark.parametrize("name", ["int8", "int8_quint8_pc"])
def test_int8_logits_match_onnxruntime(models, name):
    rng = np.random.default_rng(1)
    sess, ref = Session(models[name]), ort_session(models[name])
    for batch, length in SHAPES:
        feeds = random_feeds(rng, batch, length)
        logits, = sess.run(None, feeds)
        want, = ref.run(None, feeds)
        assert np.abs(logits - want).max() <= 5e-3
        assert (logits.argmax(1) == want.argmax(1)).all()


@pytest.mark.parametrize("name", ["int8", "int8_quint8_pc"])
def test_int8_is_exact_integer_arithmetic(models, name):
    """Against the reference evaluator (exact int32 MatMulInteger, float32 elsewhere): it needs
    opset 19 for DequantizeLinear, whose semantics did not change from 13 to 19."""
    proto = onnx.load(str(models[name]))
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = max(entry.version, 19)
    reference = ReferenceEvaluator(proto)
    sess = Session(models[name])
    rng = np.random.default_rng(2)
    for batch, length in [(2, 7), (5, 31)]:
        feeds = random_feeds(rng, batch, length)
        logits, = sess.run(None, feeds)
        want, = reference.run(None, feeds)
        assert np.abs(logits - want).max() <= 1e-5


@pytest.mark.parametrize("name", ["fp32", "int8", "int8_quint8_pc"])
def test_empty_batch_matches_onnxruntime(models, name):
    """input_ids of shape (0, L): onnxruntime returns logits of shape (0, 2); the dynamo export's
    attention Reshape(x, [0, L, -1, 16], allowzero=1) used to fail here."""
    ref = ort_session(models[name])
    for length in (1, 9):
        feeds = {k: v[:0] for k, v in random_feeds(np.random.default_rng(8), 2, length).items()}
        want = ref.run(None, feeds)
        for fuse in (True, False):
            got = Session(models[name], fuse=fuse).run(None, feeds)
            assert [(a.shape, a.dtype) for a in got] == [(a.shape, a.dtype) for a in want] == \
                [((0, 2), np.float32)]


def test_empty_batch_through_the_torchscript_export(models):
    """The TorchScript graph reshapes with allowzero=0, so its 0 copies the empty batch dim:
    onnxruntime refuses that (the -1 is 0 / 0); the runtime infers it from the non-zero dims
    as onnxruntime does for allowzero=1, and returns what every other export gives."""
    feeds = {k: v[:0] for k, v in random_feeds(np.random.default_rng(9), 2, 9).items()}
    logits, = Session(models["ts17"]).run(None, feeds)
    assert logits.shape == (0, 2) and logits.dtype == np.float32


def test_embedding_tables_are_found_in_every_export(models):
    """runtime.Classifier checks vocab.txt and max_length against these tables at load: fp32,
    int8 (the table stays uint8, dequantized after Gather) and the TorchScript exporter's graph."""
    from runtime.classifier import position_embedding_rows, word_embedding_rows
    for name, path in models.items():
        graph = ronnx.load(path).graph
        made_by = {out: node for node in graph.nodes for out in node.outputs if out}
        assert word_embedding_rows(graph, made_by) == 721, name
        assert position_embedding_rows(graph, made_by) == 128, name


def test_outputs_selection_and_feed_checks(models):
    sess = Session(str(models["fp32"]))
    assert sess.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert sess.output_names == ["logits"] and [v.name for v in sess.get_outputs()] == ["logits"]
    feeds = random_feeds(np.random.default_rng(3), 2, 6)
    everything = sess.run(None, feeds)
    assert len(everything) == 1
    np.testing.assert_array_equal(everything[0], sess.run(["logits"], feeds)[0])
    as_int32 = {k: v.astype(np.int32) for k, v in feeds.items()}
    np.testing.assert_array_equal(sess.run(None, as_int32)[0], everything[0])
    with pytest.raises(ValueError, match="unknown output"):
        sess.run(["nope"], feeds)
    with pytest.raises(ValueError, match="missing input"):
        sess.run(None, {"input_ids": feeds["input_ids"]})
    with pytest.raises(ValueError, match="unknown input"):
        sess.run(None, dict(feeds, extra=feeds["input_ids"]))
    with pytest.raises(TypeError, match="input_ids"):
        sess.run(None, dict(feeds, input_ids=feeds["input_ids"].astype(np.float32) + 0.5))
    with pytest.raises(ValueError, match="rank"):
        sess.run(None, dict(feeds, input_ids=feeds["input_ids"][0]))


def test_feeds_and_weights_are_never_modified(models):
    sess = Session(models["int8"])
    feeds = random_feeds(np.random.default_rng(4), 3, 12)
    before = {k: v.copy() for k, v in feeds.items()}
    first, = sess.run(None, feeds)
    for name, value in feeds.items():
        np.testing.assert_array_equal(value, before[name])
    second, = sess.run(None, feeds)
    np.testing.assert_array_equal(first, second)


def test_concurrent_runs_give_the_sequential_results(models):
    sess = Session(models["fp32"])
    rng = np.random.default_rng(5)
    batches = [random_feeds(rng, 4, int(n)) for n in rng.integers(1, 60, 8)]
    expected = [sess.run(None, f)[0] for f in batches]
    failures = []

    def work(i):
        try:
            for _ in range(20):
                np.testing.assert_array_equal(sess.run(None, batches[i])[0], expected[i])
        except Exception as error:        # a thread's exception would otherwise pass unseen
            failures.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)           # switch threads as often as possible, so races show
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not failures, failures[:2]


def test_constant_work_is_folded_and_intermediates_are_freed(models):
    sess = Session(models["fp32"])
    for step in sess._steps:                          # nothing left that only needs constants
        assert any(x is not None and x[0] == "v" for x in step.inputs), step.node.op_type
    produced = {n for s in sess._steps for n in s.node.outputs if n} - set(sess.output_names)
    freed = [n for s in sess._steps for n in s.free]
    # every intermediate (and every feed, once consumed) is dropped exactly once
    assert sorted(freed) == sorted(produced | set(sess.input_names))
    int8 = Session(models["int8"])
    weight_ops = [s for s in int8._steps if s.node.op_type == "MatMulInteger"]
    assert weight_ops and all(len(s.inputs) <= 2 for s in weight_ops)   # B prepared at load


# ---------------------------------------------------------------- load-time checks
def make_model(nodes, inputs, outputs, initializers=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                   helper.make_opsetid("com.microsoft", 1)])


def vinfo(name, shape=None, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def test_unknown_ops_are_named_at_load_before_running(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("FancyNewOp", ["a"], ["b"], name="fancy"),
             helper.make_node("FusedGelu", ["b"], ["y"], domain="com.microsoft")]
    path = tmp_path / "m.onnx"
    onnx.save_model(make_model(nodes, [vinfo("x", [2])], [vinfo("y")]), str(path))
    with pytest.raises(ModelError, match=r"FancyNewOp.*com\.microsoft\.FusedGelu|com\.microsoft\.FusedGelu.*FancyNewOp"):
        Session(path)


def test_graph_out_of_topological_order_is_refused():
    nodes = [helper.make_node("Relu", ["a"], ["y"]), helper.make_node("Neg", ["x"], ["a"])]
    model = ronnx.load_bytes(make_model(nodes, [vinfo("x", [2])], [vinfo("y")]).SerializeToString())
    with pytest.raises(ModelError, match="topologically"):
        Session(model)


def test_missing_graph_output_is_refused():
    nodes = [helper.make_node("Relu", ["x"], ["a"])]
    model = ronnx.load_bytes(make_model(nodes, [vinfo("x", [2])], [vinfo("y")]).SerializeToString())
    with pytest.raises(ModelError, match="never produced"):
        Session(model)


def test_failing_constant_folding_is_a_model_error():
    nodes = [helper.make_node("Reshape", ["w", "shape"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])]
    inits = [numpy_helper.from_array(np.ones(6, np.float32), "w"),
             numpy_helper.from_array(np.array([4, 4], np.int64), "shape")]
    model = ronnx.load_bytes(make_model(nodes, [vinfo("x", [2])], [vinfo("y")], inits).SerializeToString())
    with pytest.raises(ModelError, match="Reshape"):
        Session(model)


def test_in_place_reuse_never_touches_a_buffer_that_is_still_viewed():
    """a = x + 1 dies at the Mul, but its Reshape view r (and an Identity alias) live on."""
    nodes = [helper.make_node("Add", ["x", "one"], ["a"]),
             helper.make_node("Reshape", ["a", "shape"], ["r"]),
             helper.make_node("Identity", ["a"], ["i"]),
             helper.make_node("Mul", ["a", "x"], ["m"]),
             helper.make_node("Exp", ["i"], ["e"]),
             helper.make_node("Erf", ["m"], ["f"]),
             helper.make_node("Reshape", ["f", "shape"], ["fr"]),
             helper.make_node("Add", ["fr", "r"], ["s"]),
             helper.make_node("Reshape", ["e", "shape"], ["er"]),
             helper.make_node("Sub", ["s", "er"], ["y"])]
    inits = [numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array([6, 2], np.int64), "shape")]
    proto = make_model(nodes, [vinfo("x", [3, 4])], [vinfo("y"), vinfo("r")], inits)
    x = np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32)
    want = ReferenceEvaluator(proto).run(None, {"x": x})
    got = Session(ronnx.load_bytes(proto.SerializeToString())).run(None, {"x": x})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_external_data_model_runs(tmp_path, models):
    proto = onnx.load(str(models["fp32"]))
    folder = tmp_path / "ext"
    folder.mkdir()
    onnx.save_model(proto, str(folder / "model.onnx"), save_as_external_data=True,
                    location="weights.data", size_threshold=64)
    feeds = random_feeds(np.random.default_rng(7), 2, 10)
    np.testing.assert_array_equal(Session(folder / "model.onnx").run(None, feeds)[0],
                                  Session(models["fp32"]).run(None, feeds)[0])


def test_a_node_failing_at_run_time_is_named_even_on_the_in_place_path():
    """Add may write into a dying input; shapes that do not broadcast fail while that buffer is
    chosen, and the error still names the node (the fused path raised a bare ValueError)."""
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Add", ["a", "z"], ["y"], name="the_add")]
    model = ronnx.load_bytes(make_model(nodes, [vinfo("x", [None, 3]), vinfo("z", [None, 4])],
                                        [vinfo("y")]).SerializeToString())
    session = Session(model)
    feeds = {"x": np.ones((2, 3), np.float32), "z": np.ones((2, 4), np.float32)}
    with pytest.raises(RuntimeError, match=r"Add node 'the_add' failed: ValueError"):
        session.run(None, feeds)


def test_standard_op_names_in_another_domain_are_refused():
    """com.example.Relu is someone else's op, whatever its name: not the runtime's Relu."""
    nodes = [helper.make_node("Relu", ["x"], ["y"], domain="com.example", name="custom")]
    proto = make_model(nodes, [vinfo("x", [2])], [vinfo("y")])
    proto.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(ModelError, match=re.escape(
            "unsupported op type(s): com.example.Relu (e.g. node 'custom')")):
        Session(ronnx.load_bytes(proto.SerializeToString()))


def test_two_nodes_writing_the_same_name_are_refused():
    nodes = [helper.make_node("Neg", ["x"], ["y"]), helper.make_node("Abs", ["x"], ["y"], name="second")]
    model = ronnx.load_bytes(make_model(nodes, [vinfo("x", [2])], [vinfo("y")]).SerializeToString())
    with pytest.raises(ModelError, match=re.escape("node 1 (Abs 'second') writes 'y', which already exists")):
        Session(model)


def test_constant_shapes_past_the_fold_limit_are_refused_at_load():
    """ConstantOfShape of FOLD_LIMIT + 1 elements from a 16-byte shape: it was left to run, and
    allocate, at every call (2 GB a call for 2**31); a small one is folded into a constant."""
    def session(dims):
        nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"],
                                  value=numpy_helper.from_array(np.array([1], np.uint8))),
                 helper.make_node("Add", ["x", "big"], ["y"])]
        shape = numpy_helper.from_array(np.array(dims, np.int64), "shape")
        proto = make_model(nodes, [vinfo("x", [1], TensorProto.UINT8)], [vinfo("y")], [shape])
        return Session(ronnx.load_bytes(proto.SerializeToString()))

    small = session([2, 3])
    assert [s.node.op_type for s in small._steps] == ["Add"] and small._constants["big"].shape == (2, 3)
    with pytest.raises(ModelError, match=re.escape(f"constant node ConstantOfShape '' would make {FOLD_LIMIT + 1:,} "
                                                   "elements from much smaller inputs")):
        session([1, FOLD_LIMIT + 1])


def constant_graph(nodes, initializers, output="y"):
    proto = make_model(nodes, [vinfo("x", [1])], [vinfo(output)],
                       [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    return ronnx.load_bytes(proto.SerializeToString())


@pytest.mark.parametrize("case", ["pad", "broadcast", "matmul", "concat chain", "growth within the budget",
                                  "gather", "gemm transA"])
def test_a_small_file_cannot_fold_into_gigabytes(case):
    """Found by fuzzing: Pad's size was counted as a sum, and broadcasting ops, MatMul and
    Concat were never counted, so a few kilobytes made 1-4 GB of constants at load. One node
    may not grow past FOLD_LIMIT elements (checked before it runs), and all folded constants
    together not past their budget (the chain: each step under the limit, 64 MiB in all)."""
    if case == "gather":                             # 60 rows of 4M elements from a 659-byte file
        nodes = [helper.make_node("ConstantOfShape", ["shape"], ["t"]),
                 helper.make_node("Gather", ["t", "i"], ["p"], axis=0), helper.make_node("Add", ["x", "p"], ["y"])]
        init = {"shape": np.array([1, 4_000_000], np.int64), "i": np.zeros(60, np.int64)}
        with pytest.raises(ModelError, match="Gather '' would make 240,000,000 elements"):
            Session(constant_graph(nodes, init))
        return
    if case == "gemm transA":
        nodes = [helper.make_node("Gemm", ["a", "b"], ["p"], transA=1), helper.make_node("Add", ["x", "p"], ["y"])]
        init = {"a": np.ones((1, 15000), np.float32), "b": np.ones((1, 15000), np.float32)}
        with pytest.raises(ModelError, match="Gemm '' would make 225,000,000 elements"):
            Session(constant_graph(nodes, init))
        return
    if case == "growth within the budget":          # the budget alone would allow it: 17.6 MB of uint8
        nodes = [helper.make_node("Add", ["a", "b"], ["p"]), helper.make_node("Add", ["x", "p"], ["y"])]
        init = {"a": np.ones((4200, 1), np.uint8), "b": np.ones((1, 4200), np.uint8),
                "pad": np.zeros(5 << 20, np.float32)}   # 20 MB of initializers: a budget of 144 MiB
    elif case == "pad":
        nodes = [helper.make_node("Pad", ["c", "pads"], ["p"]), helper.make_node("Add", ["x", "p"], ["y"])]
        init = {"c": np.ones((1, 1, 1), np.float32), "pads": np.array([300] * 6, np.int64)}
    elif case == "broadcast":
        nodes = [helper.make_node("Add", ["a", "b"], ["ab"]), helper.make_node("Add", ["ab", "c"], ["p"]),
                 helper.make_node("Add", ["x", "p"], ["y"])]
        init = {"a": np.ones((300, 1, 1), np.float32), "b": np.ones((1, 300, 1), np.float32),
                "c": np.ones((1, 1, 300), np.float32)}
    elif case == "matmul":
        nodes = [helper.make_node("MatMul", ["a", "b"], ["p"]), helper.make_node("Add", ["x", "p"], ["y"])]
        init = {"a": np.ones((5000, 1), np.float32), "b": np.ones((1, 5000), np.float32)}
    else:
        nodes, last = [], "c"
        for i in range(24):                          # the last one 2**24 elements: FOLD_LIMIT, not past it
            nodes.append(helper.make_node("Concat", [last, last], [f"c{i}"], axis=0))
            last = f"c{i}"
        nodes.append(helper.make_node("Add", ["x", last], ["y"]))
        init = {"c": np.ones(1, np.float32)}
    with pytest.raises(ModelError, match="constant node"):
        Session(constant_graph(nodes, init))


def test_nodes_no_output_needs_are_not_run_at_load():
    """A dead branch of a hostile file still folded (and allocated) before."""
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["dead"]),
             helper.make_node("Neg", ["x"], ["y"])]
    session = Session(constant_graph(nodes, {"shape": np.array([1 << 40], np.int64)}))
    assert [s.node.op_type for s in session._steps] == ["Neg"]
    assert session.run(None, {"x": np.array([2.0], np.float32)})[0].tolist() == [-2.0]


def test_real_weights_past_the_fold_limit_still_fold():
    """Dequantizing or scaling a big weight table is not growth: it stays allowed."""
    nodes = [helper.make_node("Mul", ["w", "s"], ["ws"]), helper.make_node("Gather", ["ws", "x"], ["y"])]
    proto = make_model(nodes, [vinfo("x", [1], TensorProto.INT64)], [vinfo("y")],
                       [numpy_helper.from_array(np.ones((FOLD_LIMIT // 4 + 1, 8), np.float32), "w"),
                        numpy_helper.from_array(np.array(2.0, np.float32), "s")])
    session = Session(ronnx.load_bytes(proto.SerializeToString()))
    assert session.run(None, {"x": np.array([3], np.int64)})[0].tolist() == [[2.0] * 8]


def test_in_place_ops_never_write_into_a_feed_seen_through_identity():
    """v = Identity(x) is the caller's buffer: Neg, the last reader of v, may not write -x there."""
    nodes = [helper.make_node("Identity", ["x"], ["v"]), helper.make_node("Neg", ["v"], ["n"]),
             helper.make_node("Add", ["x", "n"], ["y"])]
    model = ronnx.load_bytes(make_model(nodes, [vinfo("x", [3])], [vinfo("y")]).SerializeToString())
    x = np.array([1, 2, 3], np.float32)
    y, = Session(model).run(None, {"x": x})
    np.testing.assert_array_equal(y, [0, 0, 0])
    np.testing.assert_array_equal(x, [1, 2, 3])


def test_matmul_integer_cast_to_int64_stays_exact():
    """Only a Cast to float may take MatMulInteger's float32 shortcut: 254 * 255 + 399 * 255^2
    is past 2^24, where float32 would round it."""
    k = 400
    nodes = [helper.make_node("MatMulInteger", ["a", "b"], ["i32"]),
             helper.make_node("Cast", ["i32"], ["y"], to=TensorProto.INT64)]
    b = np.full((k, 1), 255, np.uint8)
    proto = make_model(nodes, [vinfo("a", [1, k], TensorProto.UINT8)],
                       [vinfo("y", [1, 1], TensorProto.INT64)], [numpy_helper.from_array(b, "b")])
    a = np.full((1, k), 255, np.uint8)
    a[0, 0] = 254
    y, = Session(ronnx.load_bytes(proto.SerializeToString())).run(None, {"a": a})
    assert y.dtype == np.int64 and y.tolist() == [[254 * 255 + (k - 1) * 255 * 255]]
    assert y.tolist() == (a.astype(np.int64) @ b.astype(np.int64)).tolist()


def test_feed_shape_must_match_the_declared_fixed_dims():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    proto = make_model(nodes, [vinfo("x", [2, "n"])], [vinfo("y")])
    sess = Session(ronnx.load_bytes(proto.SerializeToString()))
    assert sess.run(None, {"x": np.ones((2, 5), np.float32)})[0].shape == (2, 5)   # symbolic dim: any
    with pytest.raises(ValueError, match=re.escape("input 'x': got shape (3, 5), expected [2, 'n']")):
        sess.run(None, {"x": np.ones((3, 5), np.float32)})


def test_outputs_nobody_reads_are_freed_where_they_are_made():
    """Dropout's mask has no reader: the step that makes it frees it, as it does its dying input."""
    nodes = [helper.make_node("Dropout", [f"x{i}"], [f"x{i + 1}", f"mask{i}"]) for i in range(3)]
    proto = make_model(nodes, [vinfo("x0", [None])], [vinfo("x3")])
    sess = Session(ronnx.load_bytes(proto.SerializeToString()))
    assert [s.free for s in sess._steps] == [["x0", "mask0"], ["x1", "mask1"], ["x2", "mask2"]]
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x0": x})[0], x)


def test_malformed_nodes_are_model_errors_at_load_and_missing_outputs_runtime_errors_at_run():
    """Found by fuzzing: raw IndexError / ValueError / KeyError escaped the documented errors."""
    gemm = [helper.make_node("Gemm", ["x"], ["y"], transB=1)]                    # B missing
    with pytest.raises(ModelError, match="cannot prepare the graph: IndexError"):
        Session(constant_graph(gemm, {}))
    deep = make_model([helper.make_node("Neg", ["x"], ["y"])], [vinfo("x", [1])], [vinfo("y")],
                      [numpy_helper.from_array(np.ones(1, np.float32), "w")])
    deep.graph.initializer[0].ClearField("dims")
    deep.graph.initializer[0].dims.extend([1] * 65)
    with pytest.raises(ModelError, match="tensor 'w': 65 dimensions \\(at most 64\\)"):
        ronnx.load_bytes(deep.SerializeToString())
    extra = [helper.make_node("Neg", ["x"], ["n", "ghost"]), helper.make_node("Add", ["n", "ghost"], ["y"])]
    session = Session(constant_graph(extra, {}))
    with pytest.raises(RuntimeError, match="Add node '' reads 'ghost', which its producer did not make"):
        session.run(None, {"x": np.ones(1, np.float32)})
    only = Session(constant_graph([helper.make_node("Neg", ["x"], ["n", "y"])], {}))
    with pytest.raises(RuntimeError, match=re.escape("output(s) ['y'] were not produced")):
        only.run(None, {"x": np.ones(1, np.float32)})


def test_inputs_onnx_ties_to_one_type_must_agree_as_onnxruntime_requires(tmp_path):
    """A float64 bias on float32 logits: onnxruntime refuses the model; numpy would promote and
    return float64 logits. The runtime names the node at run time (the value's type is known
    then), and at load when both inputs are constants. Where's condition may differ in type."""
    bias = numpy_helper.from_array(np.zeros(2, np.float64), "bias")
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Add", ["a", "bias"], ["y"], name="biased")]
    model = make_model(nodes, [vinfo("x", [None, 2])], [vinfo("y")], [bias])
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(Exception, match="Type|type"):
        ort_session(path)
    with pytest.raises(RuntimeError, match=r"Add node 'biased' failed: TypeError: Add input 1 is float64 "
                                           r"but input 0 is float32"):
        Session(path).run(None, {"x": np.ones((3, 2), np.float32)})

    folded = [helper.make_node("Mul", ["w", "bias"], ["c"], name="constant_mul"), helper.make_node("Add", ["x", "c"], ["y"])]
    weights = numpy_helper.from_array(np.ones(2, np.float32), "w")
    constant_model = make_model(folded, [vinfo("x", [None, 2])], [vinfo("y")], [weights, bias])
    with pytest.raises(ModelError, match=r"folding constant node Mul 'constant_mul' failed: TypeError: Mul "
                                         r"input 1 is float64"):
        Session(ronnx.load_bytes(constant_model.SerializeToString()))

    where = [helper.make_node("Greater", ["x", "zero"], ["positive"]),
             helper.make_node("Where", ["positive", "x", "zero"], ["y"])]
    zero = numpy_helper.from_array(np.zeros(2, np.float32), "zero")
    where_model = make_model(where, [vinfo("x", [None, 2])], [vinfo("y")], [zero])
    got, = Session(ronnx.load_bytes(where_model.SerializeToString())).run(None, {"x": np.array([[-1, 2]], np.float32)})
    assert got.dtype == np.float32 and got.tolist() == [[0.0, 2.0]]
