"""Mean pooling + normalisation + a linear head, as a plain `BertForSequenceClassification`.

The prompt and contrastive teachers classify the L2-normalised mean of the encoder's last
hidden states over the real (unmasked) tokens, the way all-MiniLM-L6-v2 was trained:

    m = sum_t a_t h_t / sum_t a_t          (a: attention mask)
    logits_k = <w_k, m / |m|> + b_k         (prompt: w_k = scale * e_k, e_k a unit label embedding)

A saved model must reproduce these scores with nothing but `AutoModelForSequenceClassification`
(no trust_remote_code) and standard ONNX ops. `BertForSequenceClassification` pools with its
pooler (first token -> dense -> tanh), so the pooling is built as one extra, standard BERT layer
(config num_hidden_layers + 1) whose weights are set by hand:

- attention: query and key weights 0, so every score is 0 and softmax spreads each query
  uniformly over the unmasked keys; value = identity. The context at every position, [CLS]
  included, is exactly the masked mean m.
- attention output dense = kappa * T, with T an isometry from the plane the means live in
  onto the zero-mean vectors (see `pooling_map`). kappa = 1e9 drowns the residual (the [CLS]
  state, ~1) below float32 resolution, and LayerNorm of a zero-mean vector is its
  normalisation: h = sqrt(H) * T m / |T m| (LayerNorm weight 1, bias 0).
- feed-forward weights 0: the second LayerNorm sees h, already normalised, and returns it.
- pooler: tanh(eps * <T w_k, h> / sqrt(H)) with eps such that |argument| <= 1e-4, where tanh(x)
  equals x to float32 precision (relative error x^2/3); classifier weight 1/eps on the
  diagonal, bias b_k.

The last encoder LayerNorm puts every h_t (so m) in the affine plane {gamma * z + beta : z zero-mean},
whose normal is n ~ 1/gamma and whose distance from the origin is delta = <beta, n>. T maps the
plane's directions isometrically onto the zero-mean vectors; the one component it drops, <m, n>,
is the constant delta. So the saved head is exact when delta = 0 (randomly initialised
LayerNorms; all-MiniLM-L6-v2, whose last LayerNorm has a zero gain and bias on one coordinate,
delta ~ 1e-31) and otherwise off by about delta / |m|; `head_report` records delta and the
measured difference. LayerNorm outputs are H numbers with zero mean, so an exact cosine for a
plane off the origin would need one more dimension than a BERT layer has.

The extreme weights (kappa, 1/eps) sit in the extra layer, the pooler and the classifier only:
a student that copies the teacher's pooler and classifier must re-initialise them (Adam's
first steps on a 1e-6 pooler under a 1e4 classifier blow the logits up). config.json marks such
a teacher with "few_shot_head": "mean-pooling" (and training.json with few_shot.head).
"""
from __future__ import annotations

import numpy as np

KAPPA = 1e9          # scale of the pooled vector before the first LayerNorm (drowns the residual)
TANH_LINEAR = 1e-4   # largest pooler pre-activation: tanh(x) = x to float32 precision below this
HEAD_MARK = "mean-pooling"   # config.json few_shot_head: the last layer, pooler and classifier are this head


def mean_pool(hidden, mask):
    """Masked mean over tokens. hidden (B, T, H), mask (B, T) -> (B, H); works on torch tensors."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)                        # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). (n, H) -> (n, H)"""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def pooling_map(gamma: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, float]:
    """(T, delta) for the last LayerNorm's gain gamma and bias beta, both (H,).

    The means lie in the plane beta + gamma * {z : sum z = 0}, with unit normal n ~ 1/gamma.
    T = R (I - n n^T), R the Householder reflection taking n to 1/sqrt(H): T is an isometry
    from the plane's directions onto the zero-mean vectors, so T m has zero mean and, for the
    in-plane part v = m - <m, n> n, <T a, T m> = <a, v> and |T m| = |v|. (H, H) float64."""
    gamma = np.asarray(gamma, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    H = gamma.shape[0]
    safe = np.where(np.abs(gamma) < 1e-30, np.copysign(1e-30, gamma + 0.0), gamma)
    n = 1.0 / safe
    n /= np.linalg.norm(n)
    u = np.full(H, 1.0 / np.sqrt(H))
    w = n - u
    reflect = np.eye(H)
    if np.linalg.norm(w) > 1e-12:
        reflect -= 2.0 * np.outer(w, w) / (w @ w)                        # R n = u, R = R^T
    T = reflect @ (np.eye(H) - np.outer(n, n))
    return T, float(beta @ n)


def linear_head_model(encoder, weights: np.ndarray, bias: np.ndarray, labels: list[str]):
    """A BertForSequenceClassification (encoder layers + one pooling layer) whose logits are
    <weights_k, m/|m|> + bias_k for the masked mean m of `encoder`'s last hidden states.
    encoder: a BertModel; weights (K, H); bias (K,). Returns (model in eval mode, info dict)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    if not isinstance(encoder, BertModel):
        raise TypeError(f"the mean-pooling head is built on BERT encoders, not {type(encoder).__name__}")
    weights = np.asarray(weights, dtype=np.float64)                      # (K, H)
    bias = np.asarray(bias, dtype=np.float64)                            # (K,)
    K, H = weights.shape
    n_layers = encoder.config.num_hidden_layers
    config = BertConfig.from_dict({**encoder.config.to_dict(), "num_hidden_layers": n_layers + 1,
                                   "architectures": ["BertForSequenceClassification"],
                                   "id2label": dict(enumerate(labels)),
                                   "label2id": {name: i for i, name in enumerate(labels)},
                                   "problem_type": "single_label_classification",
                                   "few_shot_head": HEAD_MARK})
    model = BertForSequenceClassification(config).eval()
    missing, unexpected = model.bert.load_state_dict(encoder.state_dict(), strict=False)
    stray = [k for k in missing if not k.startswith((f"encoder.layer.{n_layers}.", "pooler."))]
    if stray or unexpected:
        raise RuntimeError(f"encoder weights do not fit: missing {stray}, unexpected {unexpected}")

    last_norm = encoder.encoder.layer[-1].output.LayerNorm
    T, delta = pooling_map(last_norm.weight.detach().double().numpy(), last_norm.bias.detach().double().numpy())
    a = weights @ T.T / np.sqrt(H)                                       # (K, H): logit_k = <a_k, h>
    eps = TANH_LINEAR / max(float(np.linalg.norm(weights, axis=1).max()), 1e-12)

    def put(param, value):
        with torch.no_grad():
            param.copy_(torch.as_tensor(value, dtype=param.dtype))

    layer = model.bert.encoder.layer[n_layers]
    attention = layer.attention
    put(attention.self.query.weight, np.zeros((H, H)))
    put(attention.self.query.bias, np.zeros(H))
    put(attention.self.key.weight, np.zeros((H, H)))
    put(attention.self.key.bias, np.zeros(H))
    put(attention.self.value.weight, np.eye(H))
    put(attention.self.value.bias, np.zeros(H))
    put(attention.output.dense.weight, KAPPA * T)
    put(attention.output.dense.bias, np.zeros(H))
    put(attention.output.LayerNorm.weight, np.ones(H))
    put(attention.output.LayerNorm.bias, np.zeros(H))
    put(layer.intermediate.dense.weight, np.zeros_like(layer.intermediate.dense.weight.detach().numpy()))
    put(layer.intermediate.dense.bias, np.zeros(config.intermediate_size))
    put(layer.output.dense.weight, np.zeros_like(layer.output.dense.weight.detach().numpy()))
    put(layer.output.dense.bias, np.zeros(H))
    put(layer.output.LayerNorm.weight, np.ones(H))
    put(layer.output.LayerNorm.bias, np.zeros(H))

    pooler = np.zeros((H, H))
    pooler[:K] = eps * a
    put(model.bert.pooler.dense.weight, pooler)
    put(model.bert.pooler.dense.bias, np.zeros(H))
    classifier = np.zeros((K, H))
    classifier[np.arange(K), np.arange(K)] = 1.0 / eps
    put(model.classifier.weight, classifier)
    put(model.classifier.bias, bias)
    info = {"pooling": "mean", "normalise": True, "pooling_layer": n_layers, "kappa": KAPPA,
            "tanh_eps": eps, "plane_offset_delta": delta}
    return model, info


def direct_logits(embeddings: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The scores the saved head must reproduce: <w_k, m/|m|> + b_k. (n, H) -> (n, K)"""
    return (normalise(np.asarray(embeddings, np.float64)) @ np.asarray(weights, np.float64).T
            + np.asarray(bias, np.float64)).astype(np.float32)
