"""Debugging aids for exported graphs (used by bench/bench_parity.py and the int8 parity tests)."""
from __future__ import annotations


def with_all_outputs(path):
    """The ONNX model at `path` with every node output that shape inference can type exposed as a
    graph output, so a runtime returns each intermediate tensor."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    typed = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output)}
    present = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in present and name in typed:
                model.graph.output.append(typed[name])
                present.add(name)
    return model


def one_node_session(node_proto, inputs, outputs, opsets):
    """An unoptimised one-thread onnxruntime session over a graph of the single node `node_proto`."""
    import onnx
    import onnxruntime as ort

    graph = onnx.helper.make_graph([node_proto], "one", inputs, outputs)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 9
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def onnxruntime_kernel(node, opset):
    """fn(*args) computing a numpy-runtime node (runtime.graph Node) with onnxruntime's own kernel,
    unoptimised, one one-node session per input signature; the outputs take the first input's type."""
    from onnx import helper

    sessions = {}

    def run(*args, **_):
        key = tuple(None if a is None else (a.dtype.str, a.ndim) for a in args)
        if key not in sessions:
            names = ["" if a is None else f"in{i}" for i, a in enumerate(args)]
            inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), [None] * a.ndim)
                      for n, a in zip(names, args) if a is not None]
            outputs = [helper.make_tensor_value_info(f"out{i}", helper.np_dtype_to_tensor_dtype(args[0].dtype), None)
                       for i in range(len(node.outputs))]
            attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in node.attrs.items()}
            proto = helper.make_node(node.op_type, names, [o.name for o in outputs], **attrs)
            sessions[key] = one_node_session(proto, inputs, outputs, [("", opset)])
        result = sessions[key].run(None, {f"in{i}": a for i, a in enumerate(args) if a is not None})
        return tuple(result) if len(result) > 1 else result[0]
    return run
