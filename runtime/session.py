"""Execute an ONNX graph with the numpy ops of `runtime.ops`.

    sess = Session("bundle/model.onnx")
    logits, = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask,
                                    "token_type_ids": types})

At load the session checks that every node's op is known and that the graph is in
topological order (before anything runs), then folds every node whose inputs are all
constants (weight DequantizeLinear, weight transposes, shape arithmetic on constants) and
prepares constant weights (Gemm's transposed B, MatMulInteger's widened B cut into exact
chunks), with a few rewrites that change no value (see `Session._specialise`), and replaces
the erf-GELU chains by one blocked function with bit-identical results (`runtime.fusion`;
`Session(path, fuse=False)` runs the nodes one by one). At run time
it frees each intermediate after its last use and lets elementwise ops write into a dying
input whose buffer nothing else can see (`Session._reusable`). `run` keeps no state between
calls, so one Session may be used from several threads at once.

Malformed or unsupported models raise `runtime.onnx.ModelError` at load; bad feeds raise
ValueError/TypeError; an op failing at run time raises RuntimeError naming the node.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .graph import DTYPE_NAMES, DTYPES, Graph, Model, Node, ValueInfo
from .onnx import ModelError, load
from .fusion import fuse
from .ops import INPLACE, OPS
from .ops_quant import dynamic_quantize_linear_shifted, prepare_matmul_integer

STANDARD_DOMAINS = ("", "ai.onnx")
FOLD_LIMIT = 1 << 24          # most elements one constant node may make at load
FOLD_BUDGET = 64 << 20        # bytes of folded constants allowed beyond 4 times the initializers
# Inputs that ONNX ties to one type T (positions; None: all of them). onnxruntime refuses a
# model that breaks one at load; numpy would promote (a float64 bias makes float64 logits).
SAME_TYPE = {**dict.fromkeys(("Add", "And", "Clip", "Concat", "Div", "Equal", "Gemm", "Greater",
                              "GreaterOrEqual", "LayerNormalization", "Less", "LessOrEqual", "MatMul",
                              "Max", "Mean", "Min", "Mod", "Mul", "Or", "Range", "Sub", "Sum", "Xor"),
                             None),
             "DequantizeLinear": (0, 2), "Pad": (0, 2), "Where": (1, 2)}


@dataclass
class Step:
    """One node, ready to run: inputs are ("c", array) constants or ("v", name) values."""
    node: Node
    fn: Callable
    inputs: List[Any]
    kwargs: Dict[str, Any]
    free: List[str] = field(default_factory=list)          # values whose last use is here
    dying: List[int] = field(default_factory=list)         # input positions freed here
    inplace: bool = False
    # filled by Session._plan for the run loop: the argument list with constants in place
    # (trailing omitted inputs dropped), the (position, name) of the values to fetch, the
    # keyword arguments with `opset`/`num_outputs` included, the positions `out=` may reuse
    template: List[Any] = field(default_factory=list)
    slots: List[Any] = field(default_factory=list)
    call_kwargs: Dict[str, Any] = field(default_factory=dict)
    reuse: List[int] = field(default_factory=list)
    typed: Optional[tuple] = None                          # SAME_TYPE positions to check, if any

    def prepare(self, opset: int) -> None:
        if self.fn is OPS.get(self.node.op_type) and self.node.op_type in SAME_TYPE:
            self.typed = SAME_TYPE[self.node.op_type] or tuple(range(len(self.inputs)))
        args = [None if x is None or x[0] == "v" else x[1] for x in self.inputs]
        while args and args[-1] is None and self.inputs[len(args) - 1] is None:
            args.pop()
        self.template = args
        self.slots = [(p, x[1]) for p, x in enumerate(self.inputs) if x is not None and x[0] == "v"]
        kwargs = dict(self.kwargs)
        extras = getattr(self.fn, "extras", ())
        if "opset" in extras:
            kwargs["opset"] = opset
        if "num_outputs" in extras and "num_outputs" not in kwargs:
            kwargs["num_outputs"] = len(self.node.outputs)
        self.call_kwargs = kwargs
        if self.node.op_type == "Pow":                      # only the base's buffer can hold x^y
            self.reuse = [0] if 0 in self.dying else []
        else:
            self.reuse = list(self.dying)


def check_ops(graph: Graph) -> None:
    """Raise ModelError naming every op type the runtime lacks (or a non-standard domain)."""
    missing = {}
    for node in graph.nodes:
        known = node.domain in STANDARD_DOMAINS and node.op_type in OPS
        if not known:
            label = node.op_type if node.domain in STANDARD_DOMAINS else f"{node.domain}.{node.op_type}"
            missing.setdefault(label, node.name or node.outputs[:1])
    if missing:
        listed = ", ".join(f"{op} (e.g. node {name!r})" for op, name in sorted(missing.items()))
        raise ModelError(f"unsupported op type(s): {listed}")


def needed_nodes(graph: Graph) -> List[Node]:
    """The nodes the graph outputs depend on, in graph order."""
    wanted = {o.name for o in graph.outputs}
    needed = []
    for node in reversed(graph.nodes):
        if any(name in wanted for name in node.outputs if name):
            needed.append(node)
            wanted.update(name for name in node.inputs if name)
    return needed[::-1]


def check_order(graph: Graph, feeds: Sequence[str]) -> None:
    """Every input of every node must be a graph input, an initializer or an earlier output."""
    available = set(feeds) | set(graph.initializers)
    for i, node in enumerate(graph.nodes):
        for name in node.inputs:
            if name and name not in available:
                raise ModelError(f"node {i} ({node.op_type} {node.name!r}) reads {name!r}, which no "
                                 "earlier node, input or initializer provides (graph not "
                                 "topologically sorted, or a dangling name)")
        for name in node.outputs:
            if name and name in available:
                raise ModelError(f"node {i} ({node.op_type} {node.name!r}) writes {name!r}, which "
                                 "already exists")
            available.add(name)
    for out in graph.outputs:
        if out.name not in available:
            raise ModelError(f"graph output {out.name!r} is never produced")


def check_same_type(op_type: str, args: list, positions: Optional[tuple]) -> None:
    """Raise TypeError when the inputs at `positions` (None: all) have different types."""
    dtypes = [(p, getattr(args[p], "dtype", None)) for p in (positions or range(len(args)))
              if p < len(args) and args[p] is not None]
    first = dtypes[0][1] if dtypes else None
    for p, dtype in dtypes[1:]:
        if dtype != first:
            raise TypeError(f"{op_type} input {p} is {dtype} but input {dtypes[0][0]} is {first}: ONNX "
                            "requires one type for them (onnxruntime refuses such a model)")


def _call(fn: Callable, args: list, kwargs: dict, node: Node, opset: int):
    extras = getattr(fn, "extras", ())
    if extras:
        kwargs = dict(kwargs)
        if "opset" in extras:
            kwargs["opset"] = opset
        if "num_outputs" in extras and "num_outputs" not in kwargs:
            kwargs["num_outputs"] = len(node.outputs)
    while args and args[-1] is None:                     # trailing omitted optional inputs
        args = args[:-1]
    result = fn(*args, **kwargs)
    return result if isinstance(result, tuple) else (result,)


def _fold_size(node: Node, args: list) -> int:
    """How many elements folding the node would make, for the ops whose output can be far bigger
    than their inputs (0 for the others, and when the arguments are malformed: the op then raises
    its own error)."""
    op = node.op_type
    try:
        if op == "ConstantOfShape":
            return int(np.prod([int(d) for d in args[0]], dtype=object))
        if op == "Expand":
            return int(np.prod(np.broadcast_shapes(args[0].shape, tuple(int(d) for d in args[1])), dtype=object))
        if op == "Tile":
            return args[0].size * int(np.prod([int(r) for r in args[1]], dtype=object))
        if op == "Range":
            return int(abs((float(args[1]) - float(args[0])) / float(args[2])))
        if op == "Pad":
            pads = [int(p) for p in np.asarray(args[1]).reshape(-1)]
            rank = args[0].ndim
            return int(np.prod([d + pads[i] + pads[i + rank] for i, d in enumerate(args[0].shape)], dtype=object))
        if op == "Gather":
            axis = int(node.attrs.get("axis", 0)) % max(args[0].ndim, 1)
            return args[1].size * int(np.prod(args[0].shape[:axis] + args[0].shape[axis + 1:], dtype=object))
        if op == "Gemm":
            a, b = args[0].shape, args[1].shape
            rows = a[1] if node.attrs.get("transA", 0) else a[0]
            cols = b[0] if node.attrs.get("transB", 0) else b[1]
            return int(rows) * int(cols)
        if op in ("MatMul", "MatMulInteger"):
            a, b = args[0].shape, args[1].shape
            batch = np.broadcast_shapes(a[:-2], b[:-2]) if len(a) > 1 and len(b) > 1 else ()
            return int(np.prod([*batch, a[-2] if len(a) > 1 else 1, b[-1] if len(b) > 1 else 1], dtype=object))
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        if op == "Concat":
            return sum(a.size for a in arrays)
        if len(arrays) > 1:                              # elementwise ops broadcast their inputs
            return int(np.prod(np.broadcast_shapes(*(a.shape for a in arrays)), dtype=object))
    except Exception:
        pass
    return 0


def _grows_too_much(node: Node, args: list) -> int:
    """_fold_size when it passes FOLD_LIMIT: for the shape-making ops always; for the others
    (broadcasting, Concat, MatMul) only beyond their largest input, so that folding real weights
    (a dequantized embedding table of 23M elements) stays allowed. Else 0."""
    size = _fold_size(node, args)
    if size <= FOLD_LIMIT:
        return 0
    if node.op_type in ("ConstantOfShape", "Expand", "Tile", "Range", "Pad"):
        return size
    return size if size > max((a.size for a in args if isinstance(a, np.ndarray)), default=0) else 0


def _root(a) -> int:
    """Identity of the buffer an array views (numpy collapses view chains to the owner)."""
    base = getattr(a, "base", None)
    return id(a if base is None else base)


class Session:
    """An onnxruntime-shaped executor: `Session(path).run(output_names, feeds)`.

    `model` is a path or a `runtime.graph.Model`; `fuse=False` turns off load-time fusion."""

    def __init__(self, model, fuse: bool = True):
        self.fuse = fuse
        if not isinstance(model, Model):
            model = load(model)
        self.model = model
        graph = model.graph
        self.opset = model.opset
        check_ops(graph)
        self._inputs = [v for v in graph.inputs if v.name not in graph.initializers]
        self._outputs = list(graph.outputs)
        check_order(graph, [v.name for v in self._inputs])
        try:
            self._constants, nodes = self._fold(graph)
            self._steps = self._plan(nodes)
        except ModelError:
            raise
        except (IndexError, KeyError, TypeError, ValueError, AttributeError) as e:
            # a node malformed in a way the per-op set-up trips over (a Gemm or MatMulInteger
            # missing an input, a 1-D integer weight): a bad model, not a runtime bug
            raise ModelError(f"cannot prepare the graph: {type(e).__name__}: {e}") from e

    # ------------------------------------------------------------ inspection
    def get_inputs(self) -> List[ValueInfo]:
        return list(self._inputs)

    def get_outputs(self) -> List[ValueInfo]:
        return list(self._outputs)

    @property
    def input_names(self) -> List[str]:
        return [v.name for v in self._inputs]

    @property
    def output_names(self) -> List[str]:
        return [v.name for v in self._outputs]

    def constant(self, name: str):
        """The value a node computes at load time (folded from initializers and constants) that
        a running node reads, else None."""
        return self._constants.get(name)

    # ------------------------------------------------------------ load-time work
    def _fold(self, graph: Graph):
        """Evaluate every node whose inputs are all constant; return (constants, other nodes).
        Only nodes the outputs need run at all (a hostile file's dead nodes would still allocate),
        and folding stops with a ModelError when one node would grow past FOLD_LIMIT elements
        (_grows_too_much) or all of them past their budget (4 times the initializers' bytes, plus
        FOLD_BUDGET): a small file must not make gigabytes of constants, at load or, left unfolded,
        at every run."""
        constants: Dict[str, np.ndarray] = dict(graph.initializers)
        budget = 4 * sum(a.nbytes for a in constants.values() if isinstance(a, np.ndarray)) + FOLD_BUDGET
        remaining: List[Node] = []
        for node in needed_nodes(graph):
            fn = OPS[node.op_type]
            if all(not n or n in constants for n in node.inputs):
                args = [constants[n] if n else None for n in node.inputs]
                size = _grows_too_much(node, args)
                if size:
                    raise ModelError(f"constant node {node.op_type} {node.name!r} would make {size:,} "
                                     f"elements from much smaller inputs (at most {FOLD_LIMIT:,})")
                try:
                    if node.op_type in SAME_TYPE:
                        check_same_type(node.op_type, args, SAME_TYPE[node.op_type])
                    results = _call(fn, args, node.attrs, node, self.opset)
                except Exception as e:
                    raise ModelError(f"folding constant node {node.op_type} {node.name!r} "
                                     f"failed: {type(e).__name__}: {e}") from e
                for name, value in zip(node.outputs, results):
                    if name:
                        value = np.asarray(value)
                        budget -= value.nbytes
                        constants[name] = np.ascontiguousarray(value) if value.ndim else value
                if budget < 0:
                    raise ModelError(f"constant node {node.op_type} {node.name!r}: the folded constants "
                                     "pass their budget (4 times the initializers' bytes, plus 64 MiB)")
                continue
            remaining.append(node)
        used = {n for node in remaining for n in node.inputs} | {o.name for o in graph.outputs}
        return {k: v for k, v in constants.items() if k in used}, remaining

    def _specialise(self, nodes: List[Node], fns: Dict[int, Any]) -> Dict[int, Any]:
        """Per node index, a function replacing OPS[op_type] (the node's inputs may be
        rewritten to match). Every rewrite computes the same values as the graph says:
        - Gemm with a constant B and transB=1 gets B transposed once, at load;
        - MatMulInteger with a constant B gets B shifted by its zero point and widened once;
        - a MatMulInteger whose only reader is a Cast to float returns that float directly
          (the exact integer, rounded once, as the Cast would);
        - a DynamicQuantizeLinear whose y only feeds such MatMulIntegers, together with its
          zero point, hands them y - zero_point as float32 (the same integers).
        `fns` arrives holding the fused nodes' functions (runtime.fusion)."""
        fns = dict(fns)
        prepared = set()
        readers: Dict[str, list] = {}
        for i, node in enumerate(nodes):
            for p, name in enumerate(node.inputs):
                if name:
                    readers.setdefault(name, []).append((i, p))
        outputs = {o.name for o in self._outputs}
        for i, node in enumerate(nodes):
            const = [self._constants.get(n) if n else None for n in node.inputs]
            if node.op_type == "Gemm" and node.attrs.get("transB", 0) and const[1] is not None:
                name = node.inputs[1] + "::T"
                self._constants[name] = np.ascontiguousarray(const[1].T)
                node.inputs = [node.inputs[0], name] + node.inputs[2:]
                node.attrs = dict(node.attrs, transB=0)
            if node.op_type == "MatMulInteger" and const[1] is not None:
                has_b_zero = len(node.inputs) > 3 and bool(node.inputs[3])
                if not has_b_zero or const[3] is not None:
                    fns[i] = prepare_matmul_integer(const[1], const[3] if has_b_zero else None)
                    prepared.add(i)
                    node.inputs = [node.inputs[0], node.inputs[2] if len(node.inputs) > 2 else ""]
        for i in prepared:
            fn, out = fns[i], nodes[i].outputs[0]
            uses = readers.get(out, [])
            if out not in outputs and len(uses) == 1 and nodes[uses[0][0]].op_type == "Cast" \
                    and nodes[uses[0][0]].attrs.get("to") == 1:
                fns[i] = fn.variant(as_float=True)
        for i, node in enumerate(nodes):
            if node.op_type != "DynamicQuantizeLinear" or len(node.outputs) < 3:
                continue
            y, zero = node.outputs[0], node.outputs[2]
            uses = readers.get(y, [])
            if y in outputs or not uses or any(
                    j not in prepared or p != 0 or nodes[j].inputs[1] != zero for j, p in uses):
                continue
            shifted = y + "::shifted"
            node.outputs = [shifted] + node.outputs[1:]
            fns[i] = dynamic_quantize_linear_shifted
            for j, _ in uses:
                nodes[j].inputs = [shifted, zero]
                fns[j] = fns[j].variant(as_float=fns[j].as_float, shifted=True)
        return fns

    def _plan(self, nodes: List[Node]) -> List[Step]:
        nodes = [Node(n.op_type, list(n.inputs), list(n.outputs), dict(n.attrs), n.name, n.domain)
                 for n in nodes]
        keep = {o.name for o in self._outputs}
        fused: Dict[int, Any] = {}
        if self.fuse:
            nodes, by_id = fuse(nodes, self._constants, keep)
            fused = {i: by_id[id(n)] for i, n in enumerate(nodes) if id(n) in by_id}
        fns = self._specialise(nodes, fused)
        last_use = {}
        for i, node in enumerate(nodes):
            for name in node.inputs:
                if name:
                    last_use[name] = i
        steps = []
        for i, node in enumerate(nodes):
            inputs = [None if not n else ("c", self._constants[n]) if n in self._constants
                      else ("v", n) for n in node.inputs]
            free = sorted({n for n in node.inputs if n and n not in self._constants
                           and n not in keep and last_use.get(n) == i})
            dying = [p for p, n in enumerate(node.inputs) if n in free]
            attrs = {} if i in fns else node.attrs
            fn = fns.get(i, OPS.get(node.op_type))
            inplace = node.op_type in INPLACE or getattr(fn, "inplace", False)
            steps.append(Step(node, fn, inputs, attrs, free, dying, inplace and bool(dying)))
            steps[-1].prepare(self.opset)
        # outputs nobody reads (e.g. LayerNormalization's Mean) are dropped right away
        read = {n for s in steps for n in s.node.inputs} | keep
        for s in steps:
            s.free += [n for n in s.node.outputs if n and n not in read]
        self._constants = {k: v for k, v in self._constants.items() if k in read}
        for value in self._constants.values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False            # views of weights can't be written either
        return steps

    # ------------------------------------------------------------ running
    def _check_feeds(self, feeds: Dict[str, Any]) -> Dict[str, np.ndarray]:
        if not isinstance(feeds, dict):
            raise TypeError(f"feeds must be a dict of name -> array, not {type(feeds).__name__}")
        expected = {v.name: v for v in self._inputs}
        unknown = sorted(set(feeds) - set(expected))
        if unknown:
            raise ValueError(f"unknown input(s) {unknown}; the model's inputs are {list(expected)}")
        missing = [n for n in expected if n not in feeds]
        if missing:
            raise ValueError(f"missing input(s) {missing}")
        arrays = {}
        for name, value in feeds.items():
            info = expected[name]
            array = np.asarray(value)
            want = DTYPES.get(info.elem_type)
            if want is not None and array.dtype != want:
                if array.dtype.kind in "iub" and want.kind in "iu" or \
                        array.dtype.kind in "fiu" and want.kind == "f":
                    array = array.astype(want)
                else:
                    raise TypeError(f"input {name!r}: got {array.dtype}, expected "
                                    f"{DTYPE_NAMES[info.elem_type]}")
            if info.shape is not None:
                if array.ndim != len(info.shape):
                    raise ValueError(f"input {name!r}: got rank {array.ndim} shape {array.shape}, "
                                     f"expected rank {len(info.shape)} {info.shape}")
                for got, dim in zip(array.shape, info.shape):
                    if isinstance(dim, int) and dim > 0 and got != dim:
                        raise ValueError(f"input {name!r}: got shape {array.shape}, expected "
                                         f"{info.shape}")
            arrays[name] = array
        return arrays

    def run(self, output_names: Optional[Sequence[str]], feeds: Dict[str, Any]) -> List[np.ndarray]:
        """Compute the named outputs (all graph outputs when None) from the feeds."""
        wanted = self.output_names if output_names is None else list(output_names)
        bad = [n for n in wanted if n not in self.output_names]
        if bad:
            raise ValueError(f"unknown output(s) {bad}; the model's outputs are {self.output_names}")
        env: Dict[str, Any] = dict(self._check_feeds(feeds))
        foreign = {_root(a) for a in env.values()}       # the caller's buffers: never written
        live: Dict[int, int] = {}                        # buffer -> live values viewing it
        reusable = self._reusable
        for step in self._steps:
            args = step.template.copy()
            try:
                for position, name in step.slots:
                    args[position] = env[name]
            except KeyError as e:
                raise RuntimeError(f"{step.node.op_type} node {step.node.name!r} reads {e.args[0]!r}, which "
                                   "its producer did not make (it declares more outputs than its op makes)") from None
            kwargs = step.call_kwargs
            try:
                if step.typed:
                    check_same_type(step.node.op_type, args, step.typed)
                if step.inplace:     # (finding the output buffer broadcasts the shapes: may fail too)
                    out = reusable(step, args, live, foreign)
                    if out is not None:
                        kwargs = dict(kwargs, out=out)
                results = step.fn(*args, **kwargs)
            except Exception as e:
                node = step.node
                raise RuntimeError(f"{node.op_type} node {node.name!r} failed: "
                                   f"{type(e).__name__}: {e}") from e
            del args
            if not isinstance(results, tuple):
                results = (results,)
            for name, value in zip(step.node.outputs, results):
                if name:
                    env[name] = value
                    base = getattr(value, "base", None)
                    key = id(value if base is None else base)
                    live[key] = live.get(key, 0) + 1
            for name in step.free:
                value = env.pop(name, None)
                if value is not None:
                    base = getattr(value, "base", None)
                    key = id(value if base is None else base)
                    count = live.get(key, 0)
                    if count <= 1:
                        live.pop(key, None)
                    else:
                        live[key] = count - 1
        missing = [n for n in wanted if n not in env and n not in self._constants]
        if missing:      # a node declared more outputs than its op makes (onnxruntime refuses those)
            raise RuntimeError(f"output(s) {missing} were not produced: a node declares more outputs "
                               "than its op makes")
        return [env[n] if n in env else self._constants[n] for n in wanted]

    @staticmethod
    def _reusable(step: Step, args: list, live: Dict[int, int], foreign: set):
        """A dying input buffer the elementwise op may overwrite, or None."""
        first = args[0]
        if first is None:
            return None
        dtype = first.dtype
        shape = first.shape
        pow_ = step.node.op_type == "Pow"
        for a in args[1:]:
            if a is None:
                continue
            if a.dtype != dtype and not pow_:
                return None
            other = a.shape
            if other != shape and not (len(other) <= len(shape) and (
                    other == shape[len(shape) - len(other):] or a.size == 1)):
                shape = np.broadcast_shapes(shape, other)        # (a bias or scalar keeps shape)
        for p in step.reuse:
            a = args[p]
            if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype or \
                    not a.flags.writeable or not a.flags.c_contiguous:
                continue
            base = a.base
            key = id(a if base is None else base)
            if key in foreign or live.get(key, 0) != 1:
                continue
            return a
        return None
