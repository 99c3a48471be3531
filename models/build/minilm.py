"""all-MiniLM-L6-v2 as an ONNX graph written with onnx.helper from the safetensors weights
(no torch), an independent numpy reference forward pass, and a logistic-regression head
appended to the graph.

Graph inputs: input_ids, attention_mask (int64 [batch, seq]; token_type_ids are folded in
as zeros). Outputs: embedding (float [batch, 384], mean-pooled and L2-normalised) and,
once the head is appended, probabilities (float [batch, 1]).
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HEADS, HEAD_DIM, HIDDEN, LAYERS, EPS = 12, 32, 384, 6, 1e-12
MASK_NEG = -10000.0  # additive mask; exp(-1e4) underflows to exactly 0 in float32


class Graph:
    def __init__(self, weights):
        self.w, self.nodes, self.inits, self.n = weights, [], [], 0

    def const(self, value, name=None):
        self.n += 1
        name = name or f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, kind, inputs, **attrs):
        self.n += 1
        out = f"{kind.lower()}_{self.n}"
        self.nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    def weight(self, key, transpose=False):
        value = self.w[key].astype(np.float32)
        return self.const(value.T.copy() if transpose else value, key)

    def linear(self, x, prefix):
        y = self.op("MatMul", [x, self.weight(f"{prefix}.weight", transpose=True)])
        return self.op("Add", [y, self.weight(f"{prefix}.bias")])

    def layer_norm(self, x, prefix):
        return self.op("LayerNormalization",
                       [x, self.weight(f"{prefix}.weight"), self.weight(f"{prefix}.bias")],
                       axis=-1, epsilon=EPS)


def build_encoder(weights) -> onnx.ModelProto:
    g = Graph(weights)
    ids, mask = "input_ids", "attention_mask"
    word = g.op("Gather", [g.weight("embeddings.word_embeddings.weight"), ids])
    seq_len = g.op("Gather", [g.op("Shape", [ids]), g.const(np.int64(1))], axis=0)
    positions = g.op("Range", [g.const(np.int64(0)), seq_len, g.const(np.int64(1))])
    pos = g.op("Gather", [g.weight("embeddings.position_embeddings.weight"), positions])
    token_type = g.const(weights["embeddings.token_type_embeddings.weight"][0].astype(np.float32))
    x = g.op("Add", [g.op("Add", [word, pos]), token_type])
    x = g.layer_norm(x, "embeddings.LayerNorm")

    mask_f = g.op("Cast", [mask], to=TensorProto.FLOAT)
    additive = g.op("Mul", [g.op("Sub", [g.const(np.float32(1.0)), mask_f]),
                            g.const(np.float32(MASK_NEG))])
    additive = g.op("Unsqueeze", [additive, g.const(np.array([1, 2], dtype=np.int64))])
    split_heads = g.const(np.array([0, 0, HEADS, HEAD_DIM], dtype=np.int64))
    merge_heads = g.const(np.array([0, 0, HIDDEN], dtype=np.int64))
    scale = g.const(np.float32(1.0 / np.sqrt(HEAD_DIM)))

    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        heads = {}
        for part, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3])):
            y = g.op("Reshape", [g.linear(x, f"{p}.attention.self.{part}"), split_heads])
            heads[part] = g.op("Transpose", [y], perm=perm)
        scores = g.op("Mul", [g.op("MatMul", [heads["query"], heads["key"]]), scale])
        probs = g.op("Softmax", [g.op("Add", [scores, additive])], axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, heads["value"]])], perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, merge_heads])
        attn = g.linear(ctx, f"{p}.attention.output.dense")
        x = g.layer_norm(g.op("Add", [attn, x]), f"{p}.attention.output.LayerNorm")
        h = g.linear(x, f"{p}.intermediate.dense")
        erf = g.op("Erf", [g.op("Mul", [h, g.const(np.float32(1 / np.sqrt(2)))])])
        h = g.op("Mul", [g.op("Mul", [h, g.const(np.float32(0.5))]),
                         g.op("Add", [erf, g.const(np.float32(1.0))])])
        out = g.linear(h, f"{p}.output.dense")
        x = g.layer_norm(g.op("Add", [out, x]), f"{p}.output.LayerNorm")

    m = g.op("Unsqueeze", [mask_f, g.const(np.array([2], dtype=np.int64))])
    summed = g.op("ReduceSum", [g.op("Mul", [x, m]), g.const(np.array([1], dtype=np.int64))],
                  keepdims=0)
    count = g.op("ReduceSum", [mask_f, g.const(np.array([1], dtype=np.int64))], keepdims=1)
    pooled = g.op("Div", [summed, g.op("Max", [count, g.const(np.float32(1e-9))])])
    norm = g.op("ReduceL2", [pooled], axes=[1], keepdims=1)  # opset 17: axes is an attribute
    g.nodes.append(helper.make_node(
        "Div", [pooled, g.op("Max", [norm, g.const(np.float32(1e-12))])], ["embedding"],
        name="embedding"))

    graph = helper.make_graph(
        g.nodes, "minilm_l6_v2",
        [helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", HIDDEN])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="offpath-models-build")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def append_head(model: onnx.ModelProto, coef, intercept) -> onnx.ModelProto:
    """probabilities = sigmoid(embedding · coef + intercept), shape [batch, 1]."""
    g = model.graph
    g.initializer.extend([
        numpy_helper.from_array(np.asarray(coef, dtype=np.float32).reshape(HIDDEN, 1), "head.weight"),
        numpy_helper.from_array(np.asarray([intercept], dtype=np.float32), "head.bias"),
    ])
    g.node.extend([
        helper.make_node("MatMul", ["embedding", "head.weight"], ["head_logit_mm"], name="head_mm"),
        helper.make_node("Add", ["head_logit_mm", "head.bias"], ["head_logit"], name="head_add"),
        helper.make_node("Sigmoid", ["head_logit"], ["probabilities"], name="head_sigmoid"),
    ])
    g.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 1]))
    onnx.checker.check_model(model)
    return model


def reference_forward(weights, ids, mask):
    """Independent float64 numpy forward pass of the same network."""
    w = {k: v.astype(np.float64) for k, v in weights.items() if v.dtype != np.int64}

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + EPS) * w[f"{p}.weight"] + w[f"{p}.bias"]

    def lin(x, p):
        return x @ w[f"{p}.weight"].T + w[f"{p}.bias"]

    from scipy.special import erf
    b, s = ids.shape
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:s]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = ln(x, "embeddings.LayerNorm")
    add = (1.0 - mask[:, None, None, :]) * MASK_NEG
    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        q, k, v = (lin(x, f"{p}.attention.self.{n}").reshape(b, s, HEADS, HEAD_DIM).transpose(0, 2, 1, 3)
                   for n in ("query", "key", "value"))
        sc = q @ k.transpose(0, 1, 3, 2) / np.sqrt(HEAD_DIM) + add
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        ctx = (sc / sc.sum(-1, keepdims=True)) @ v
        ctx = ctx.transpose(0, 2, 1, 3).reshape(b, s, HIDDEN)
        x = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        h = lin(x, f"{p}.intermediate.dense")
        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
        x = ln(lin(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
