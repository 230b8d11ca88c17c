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
