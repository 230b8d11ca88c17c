"""Exact int8 at bert-base's inner dimension on real activations (a reduced bench_chinese).

A one-layer BERT with bert-base-chinese's feed-forward width (3072, so the second
MatMulInteger sums 3072 products per output), the shared Chinese vocabulary file read by the
Hugging Face tokenizer, random weights, 10 labels; exported by export/ (fp32, then quint8
dynamic quantization) and run on THUCNews titles. Every MatMulInteger the runtime computes is
compared with exact integer arithmetic on the operands it actually received.
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from runtime.session import Session

INTERMEDIATE = 3072


@pytest.fixture(scope="module")
def wide(shared_data, tmp_path_factory):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    from export.onnx_export import export_fp32, load_classifier
    from export.quantize import quantize_int8

    root = tmp_path_factory.mktemp("wide")
    tokenizer = BertTokenizer(str(shared_data / "vocab" / "bert-base-chinese-vocab.txt"),
                              do_lower_case=True, tokenize_chinese_chars=True)
    labels = (shared_data / "thucnews" / "class.txt").read_text(encoding="utf-8").split()
    config = BertConfig(vocab_size=max(tokenizer.get_vocab().values()) + 1, hidden_size=64,
                        num_hidden_layers=1, num_attention_heads=2, intermediate_size=INTERMEDIATE,
                        max_position_embeddings=64, id2label=dict(enumerate(labels)),
                        label2id={n: i for i, n in enumerate(labels)})
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    model, _, _ = load_classifier(root / "model")
    paths = {"fp32": root / "fp32.onnx", "int8": root / "int8.onnx"}
    export_fp32(model, paths["fp32"])
    quantize_int8(paths["fp32"], paths["int8"])
    lines = (shared_data / "thucnews" / "test.txt").read_text(encoding="utf-8").splitlines()
    titles = [line.split("\t")[0] for line in lines[::157]]                # 64 titles, all classes
    batches = []
    for start in range(0, len(titles), 16):
        enc = tokenizer(titles[start:start + 16], padding=True, truncation=True, max_length=48,
                        return_tensors="np")
        batches.append({k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")})
    return paths, batches


def test_every_matmul_integer_is_exact_on_real_activations(wide):
    paths, batches = wide
    sess = Session(paths["int8"])
    graph = sess.model.graph
    producer = {n.outputs[0]: n for n in graph.nodes if n.outputs}
    seen = {}

    def checked(step):
        fn, node = step.fn, producer[step.node.outputs[0]]
        b = graph.initializers[node.inputs[1]].astype(np.int64)
        if len(node.inputs) > 3 and node.inputs[3]:
            b = b - graph.initializers[node.inputs[3]].astype(np.int64)

        def run(a, zero=None):
            got = fn(a, zero)
            a_int = a.astype(np.int64) if fn.shifted else a.astype(np.int64) - int(zero)
            want = a_int.reshape(-1, b.shape[0]) @ b                 # true integer arithmetic
            assert np.abs(want).max() < 2 ** 31
            want = want.astype(np.float32 if fn.as_float else np.int32)
            np.testing.assert_array_equal(got.reshape(want.shape), want)
            seen[b.shape[0]] = seen.get(b.shape[0], 0) + 1
            return got
        return run

    for step in sess._steps:
        if step.node.op_type == "MatMulInteger":
            step.fn = checked(step)
    for feeds in batches:
        sess.run(None, feeds)
    assert seen.get(INTERMEDIATE) == len(batches)                  # the 3072-wide product ran
    assert seen.get(64, 0) >= 5 * len(batches)                     # q, k, v, output, first FFN


def test_logits_match_onnxruntime(wide):
    paths, batches = wide
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    for name, bound in (("fp32", 1e-4), ("int8", 5e-3)):
        sess = Session(paths[name])
        ref = ort.InferenceSession(str(paths[name]), options, providers=["CPUExecutionProvider"])
        for feeds in batches:
            got, = sess.run(None, feeds)
            want, = ref.run(None, feeds)
            assert got.shape == (len(feeds["input_ids"]), 10)
            assert np.abs(got - want).max() <= bound, name
            assert (got.argmax(1) == want.argmax(1)).all(), name
