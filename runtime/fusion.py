"""Load-time fusion: a recognised chain of elementwise nodes becomes one numpy function that
computes the same float32 values on cache-sized blocks.

GELU in its erf form, as exporters write it (c, k, h one-element float constants; operands
of Add and Mul in either order):

    u = Div(x, c) | Mul(x, c);   e = Erf(u);   a = Add(e, k)
    y = Mul(x, Mul(a, h))  |  Mul(Mul(x, a), h)  |  Mul(Mul(x, h), a)

`GeluErf` replays exactly these operations, in the same order and in float32, one block at a
time, so its result is bit-identical to running the nodes one by one (a test compares fused
and unfused sessions on exported models). What it saves is memory traffic: the unfused nodes
stream five arrays the size of the feed-forward activation through memory, the fused one
reads x and writes y once, with the intermediates in cache.

`fuse(nodes, constants, keep)` returns the node list with each match replaced by one node of
op type `GeluErf` (domain "runtime"), and {id(node): function} for those nodes.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .graph import Node
from .ops import ERF_BLOCK, erf, erf_block, erf_scratch

FUSED_DOMAIN = "runtime"


class GeluErf:
    """y = the GELU chain above for float32 x (any other dtype runs the nodes one by one).

    order: "x*(a*h)", "(x*a)*h" or "(x*h)*a", how the two Muls combine x, a and h."""

    inplace = True                                   # may write y into x's dying buffer

    def __init__(self, pre: str, c: np.ndarray, k: np.ndarray, h: np.ndarray, order: str):
        self.pre = np.divide if pre == "Div" else np.multiply
        self.c, self.k, self.h = c, k, h
        self.order = order

    def unfused(self, x: np.ndarray) -> np.ndarray:
        """The nodes one at a time, as the graph says (the definition of the result)."""
        a = erf(self.pre(x, self.c)) + self.k
        if self.order == "x*(a*h)":
            return x * (a * self.h)
        if self.order == "(x*a)*h":
            return (x * a) * self.h
        return (x * self.h) * a

    def __call__(self, x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        if x.dtype != np.float32 or x.ndim == 0 or any(
                v.dtype != np.float32 for v in (self.c, self.k, self.h)):
            return self.unfused(x)
        if out is None or not out.flags.c_contiguous:
            out = np.empty(x.shape, np.float32)
        xs = x.reshape(-1) if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(-1)
        ys = out.reshape(-1)
        n = xs.size
        block = min(n, ERF_BLOCK)
        if block == 0:
            return out
        scratch, u = erf_scratch(block), np.empty(block, np.float32)
        c, k, h = (v.reshape(()) for v in (self.c, self.k, self.h))
        pre, order = self.pre, self.order
        for start in range(0, n, block):
            xb, yb = xs[start:start + block], ys[start:start + block]
            ub = u[:xb.shape[0]]
            pre(xb, c, out=ub)
            np.clip(ub, -4.0, 4.0, out=ub)           # what erf() does before its blocks
            erf_block(ub, ub, scratch)
            ub += k                                  # a
            if order == "x*(a*h)":
                ub *= h
                np.multiply(xb, ub, out=yb)
            elif order == "(x*a)*h":
                ub *= xb
                np.multiply(ub, h, out=yb)
            else:                                    # (x*h)*a; yb may be xb: x is read first
                np.multiply(xb, h, out=yb)
                yb *= ub
        return out


# ---------------------------------------------------------------- matching
def _scalar(constants: dict, name: str) -> Optional[np.ndarray]:
    value = constants.get(name)
    if isinstance(value, np.ndarray) and value.size == 1 and value.ndim <= 1 \
            and value.dtype.kind == "f":
        return value
    return None


class _Graph:
    """Who produces and who reads each value of a node list."""

    def __init__(self, nodes: List[Node], keep: set):
        self.nodes = nodes
        self.keep = keep
        self.producer = {out: i for i, n in enumerate(nodes) for out in n.outputs if out}
        self.readers: Dict[str, List[int]] = {}
        for i, n in enumerate(nodes):
            for name in n.inputs:
                if name:
                    self.readers.setdefault(name, []).append(i)

    def only_reader(self, name: str) -> Optional[int]:
        """The index of the single node reading `name`, if it has exactly one reader, reads it
        once and `name` is not a graph output."""
        readers = self.readers.get(name, [])
        if name in self.keep or len(readers) != 1:
            return None
        return readers[0]

    def node(self, i: Optional[int], op_type: str) -> Optional[Node]:
        if i is None:
            return None
        n = self.nodes[i]
        return n if n.op_type == op_type and n.domain in ("", "ai.onnx") else None


def _other(node: Node, name: str) -> Optional[str]:
    """The other input of a two-input node that reads `name` once."""
    if len(node.inputs) != 2 or node.inputs.count(name) != 1:
        return None
    return node.inputs[1] if node.inputs[0] == name else node.inputs[0]


def _match_gelu(g: _Graph, constants: dict, erf_index: int):
    """-> (indices of the matched nodes, fused Node, GeluErf) or None."""
    erf_node = g.nodes[erf_index]
    u = erf_node.inputs[0] if len(erf_node.inputs) == 1 else ""
    if not u or g.only_reader(u) != erf_index or u not in g.producer:
        return None
    pre_index = g.producer[u]
    pre = g.nodes[pre_index]
    if pre.op_type not in ("Div", "Mul") or pre.domain not in ("", "ai.onnx") or len(pre.inputs) != 2:
        return None
    if pre.op_type == "Div" or _scalar(constants, pre.inputs[1]) is not None:
        x, c = pre.inputs
    else:
        c, x = pre.inputs
    c_value = _scalar(constants, c)
    if c_value is None or x in constants:
        return None
    e = erf_node.outputs[0]
    add_index = g.only_reader(e)
    add = g.node(add_index, "Add")
    k = _other(add, e) if add else None
    k_value = _scalar(constants, k) if k else None
    if k_value is None:
        return None
    a = add.outputs[0]
    first_index = g.only_reader(a)
    first = g.node(first_index, "Mul")
    if first is None:
        return None
    partner = _other(first, a)
    if partner is None:
        return None
    head = [pre_index, erf_index, add_index]
    if partner != x and _scalar(constants, partner) is None:
        return _match_gelu_xh_first(g, constants, head, first_index, partner, x, c_value,
                                    k_value, pre.op_type)
    second_index = g.only_reader(first.outputs[0])
    second = g.node(second_index, "Mul")
    other = _other(second, first.outputs[0]) if second else None
    if other is None:
        return None
    if partner == x:                                 # m = x*a; y = m*h
        order, h_value = "(x*a)*h", _scalar(constants, other)
    else:                                            # m = a*h; y = x*m
        order, h_value = "x*(a*h)", _scalar(constants, partner)
        if other != x:
            return None
    if h_value is None:
        return None
    y = second.outputs[0]
    fused = Node("GeluErf", [x], [y], {}, second.name or y, FUSED_DOMAIN)
    fn = GeluErf(pre.op_type, c_value, k_value, h_value, order)
    return head + [first_index, second_index], fused, fn


def _match_gelu_xh_first(g: _Graph, constants, head, last_index, v, x, c_value, k_value, pre_op):
    """The (x*h)*a form: a's only reader multiplies it by v = Mul(x, h)."""
    last = g.nodes[last_index]
    if v not in g.producer or g.only_reader(v) != last_index:
        return None
    v_index = g.producer[v]
    v_node = g.node(v_index, "Mul")
    h = _other(v_node, x) if v_node else None
    h_value = _scalar(constants, h) if h else None
    if h_value is None:
        return None
    y = last.outputs[0]
    fused = Node("GeluErf", [x], [y], {}, last.name or y, FUSED_DOMAIN)
    fn = GeluErf(pre_op, c_value, k_value, h_value, "(x*h)*a")
    return head + [v_index, last_index], fused, fn


def fuse(nodes: List[Node], constants: dict, keep) -> Tuple[List[Node], Dict[int, Callable]]:
    """Replace every recognised pattern; the fused node takes the place of the pattern's last
    node (all its inputs exist by then). Returns (new node list, {id(fused node): fn})."""
    g = _Graph(nodes, set(keep))
    replaced: Dict[int, Node] = {}
    dropped: set = set()
    fns: Dict[int, Callable] = {}
    for i, node in enumerate(nodes):
        if node.op_type != "Erf" or node.domain not in ("", "ai.onnx") or i in dropped:
            continue
        match = _match_gelu(g, constants, i)
        if match is None:
            continue
        indices, fused, fn = match
        if dropped.intersection(indices) or len(set(indices)) != len(indices):
            continue
        last = max(indices)
        dropped.update(j for j in indices if j != last)
        replaced[last] = fused
        fns[id(fused)] = fn
    out = [replaced.get(i, n) for i, n in enumerate(nodes) if i not in dropped]
    return out, fns
