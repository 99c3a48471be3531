"""minilm-insult with static int8 arithmetic and 7-bit weights (`quantize.static7`, issue 15:
speed without giving up batch invariance).

The same network as `minilm.build_encoder`, laid out for ONNX Runtime's CPU kernels:

* activations stay 2-D, [batch * seq, 384], through the encoder and are reshaped only
  around attention: ORT 1.31 fuses Add + LayerNormalization on 3-D tensors into its
  `SkipLayerNormalization` kernel, which ran about 6x slower on CPU than the two ops;
* one fused [384, 1152] QKV weight matrix per layer instead of three [384, 384] ones;
* every weight MatMul is `com.microsoft:MatMulIntegerToFloat` (bias inside) fed by a
  `QuantizeLinear` whose uint8 scale and zero point are **fixed**, calibrated once on a
  fixed sample of train.csv (`quantize.TrainTexts`, min/max): a row's integers depend on
  its own values only, never on its neighbours or padding (dynamic quantization computed
  the scale over the whole batch, v1's batch dependence);
* weights symmetric per output column with 7 bits, [-63, 63] (scale = max|w| / 63): a
  uint8 x int8 pair sum is then at most 2 * 255 * 64 = 32,640, inside int16, so AVX2's
  `vpmaddubsw` cannot saturate and every instruction set computes the same integer sums
  (with 8-bit weights AVX2 and VNNI differed by up to 0.19 in v1's scores);
* `com.microsoft:Gelu` (exact erf) for the feed-forward activation.

The embedding tables are stored as int8 per row and turned back into fp32 when the session
is created (as `quantize.weights8` does); attention (activation x activation), LayerNorm,
softmax, pooling and the head stay fp32."""

import numpy as np
import onnx
from onnx import TensorProto, helper

import minilm
from minilm import HEAD_DIM, HEADS, HIDDEN, LAYERS

MS_DOMAIN = "com.microsoft"
WEIGHT_MAX = 63  # 7-bit symmetric weights: see the module docstring


def quantize_weight(w):
    """(int8 [K, N] in [-63, 63], float32 scale [N]): one scale per output column."""
    scale = np.abs(w).max(axis=0) / WEIGHT_MAX
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale), -WEIGHT_MAX - 1, WEIGHT_MAX).astype(np.int8)
    return q, scale.astype(np.float32)


def activation_params(lo, hi):
    """uint8 scale and zero point for a calibrated range, as onnxruntime.quantization
    computes them (range widened to include 0)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = np.float32((hi - lo) / 255.0) if hi > lo else np.float32(1.0)
    zero = np.uint8(np.clip(np.round(-lo / float(scale)), 0, 255))
    return scale, zero


def linears(weights):
    """(key, weight [K, N] float32, bias [N] float32) of every weight MatMul, in graph order;
    Q, K and V fused into one matrix per layer."""
    def wb(prefix):
        return (weights[f"{prefix}.weight"].astype(np.float32).T, weights[f"{prefix}.bias"].astype(np.float32))
    out = []
    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        parts = [wb(f"{p}.attention.self.{n}") for n in ("query", "key", "value")]
        out.append((f"l{i}.qkv", np.concatenate([w for w, _ in parts], axis=1),
                    np.concatenate([b for _, b in parts])))
        out.append((f"l{i}.attn_out",) + wb(f"{p}.attention.output.dense"))
        out.append((f"l{i}.inter",) + wb(f"{p}.intermediate.dense"))
        out.append((f"l{i}.out",) + wb(f"{p}.output.dense"))
    return out


class Graph(minilm.Graph):
    def __init__(self, weights, act=None):
        super().__init__(weights)
        self.act = act  # {key: (scale, zero point)}; None: fp32 MatMul + Add
        self.taps = []  # (key, name of the tensor the key's MatMul reads)

    def dense(self, x, key, w, b):
        self.taps.append((key, x))
        if self.act is None:
            return self.op("Add", [self.op("MatMul", [x, self.const(w, f"{key}.w")]), self.const(b, f"{key}.b")])
        scale, zero = self.act[key]
        a_scale, a_zero = self.const(scale, f"{key}.a_scale"), self.const(zero, f"{key}.a_zero")
        xq = self.op("QuantizeLinear", [x, a_scale, a_zero])
        wq, w_scale = quantize_weight(w)
        return self.op("MatMulIntegerToFloat",
                       [xq, self.const(wq, f"{key}.wq"), a_scale, self.const(w_scale, f"{key}.w_scale"),
                        a_zero, "", self.const(b, f"{key}.b")], domain=MS_DOMAIN)

    def table(self, key):
        """An embedding table; int8 per row + Cast/Mul (folded at session creation) when
        quantizing, as `quantize.weights8` stores them."""
        w = self.w[key].astype(np.float32)
        if self.act is None:
            return self.const(w, key)
        scale = np.abs(w).max(axis=1, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        f = self.op("Cast", [self.const(q, f"{key}_q8")], to=TensorProto.FLOAT)
        return self.op("Mul", [f, self.const(scale.astype(np.float32), f"{key}_scale")])


def build_encoder(weights, act=None):
    """(model, taps): the encoder (outputs `embedding`), fp32 when `act` is None (for
    calibration and the numpy check), else quantized with the activation parameters `act`."""
    g = Graph(weights, act)
    ids, mask = "input_ids", "attention_mask"
    dense = {key: (w, b) for key, w, b in linears(weights)}
    word = g.op("Gather", [g.table("embeddings.word_embeddings.weight"), ids])
    shape = g.op("Shape", [ids])  # [batch, seq]
    seq_len = g.op("Gather", [shape, g.const(np.int64(1))], axis=0)
    positions = g.op("Range", [g.const(np.int64(0)), seq_len, g.const(np.int64(1))])
    pos = g.op("Gather", [g.table("embeddings.position_embeddings.weight"), positions])
    token_type = g.const(weights["embeddings.token_type_embeddings.weight"][0].astype(np.float32))
    x = g.layer_norm(g.op("Add", [g.op("Add", [word, pos]), token_type]), "embeddings.LayerNorm")
    x = g.op("Reshape", [x, g.const(np.array([-1, HIDDEN], dtype=np.int64))])  # [batch*seq, 384]

    mask_f = g.op("Cast", [mask], to=TensorProto.FLOAT)
    additive = g.op("Mul", [g.op("Sub", [g.const(np.float32(1.0)), mask_f]), g.const(np.float32(minilm.MASK_NEG))])
    additive = g.op("Unsqueeze", [additive, g.const(np.array([1, 2], dtype=np.int64))])
    split_heads = g.op("Concat", [shape, g.const(np.array([HEADS, HEAD_DIM], dtype=np.int64))], axis=0)
    flat = g.const(np.array([-1, HIDDEN], dtype=np.int64))
    thirds = g.const(np.array([HIDDEN] * 3, dtype=np.int64))
    scale = g.const(np.float32(1.0 / np.sqrt(HEAD_DIM)))

    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        qkv = g.dense(x, f"l{i}.qkv", *dense[f"l{i}.qkv"])
        parts = [f"{qkv}_{n}" for n in ("q", "k", "v")]
        g.nodes.append(helper.make_node("Split", [qkv, thirds], parts, name=f"{qkv}_split", axis=1))
        heads = [g.op("Transpose", [g.op("Reshape", [t, split_heads])], perm=perm)
                 for t, perm in zip(parts, ([0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3]))]
        scores = g.op("Mul", [g.op("MatMul", [heads[0], heads[1]]), scale])
        probs = g.op("Softmax", [g.op("Add", [scores, additive])], axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, heads[2]])], perm=[0, 2, 1, 3])
        attn = g.dense(g.op("Reshape", [ctx, flat]), f"l{i}.attn_out", *dense[f"l{i}.attn_out"])
        x = g.layer_norm(g.op("Add", [attn, x]), f"{p}.attention.output.LayerNorm")
        h = g.op("Gelu", [g.dense(x, f"l{i}.inter", *dense[f"l{i}.inter"])], domain=MS_DOMAIN)
        out = g.dense(h, f"l{i}.out", *dense[f"l{i}.out"])
        x = g.layer_norm(g.op("Add", [out, x]), f"{p}.output.LayerNorm")

    x = g.op("Reshape", [x, g.op("Concat", [shape, g.const(np.array([HIDDEN], dtype=np.int64))], axis=0)])
    m = g.op("Unsqueeze", [mask_f, g.const(np.array([2], dtype=np.int64))])
    summed = g.op("ReduceSum", [g.op("Mul", [x, m]), g.const(np.array([1], dtype=np.int64))], keepdims=0)
    count = g.op("ReduceSum", [mask_f, g.const(np.array([1], dtype=np.int64))], keepdims=1)
    pooled = g.op("Div", [summed, g.op("Max", [count, g.const(np.float32(1e-9))])])
    norm = g.op("ReduceL2", [pooled], axes=[1], keepdims=1)
    g.nodes.append(helper.make_node("Div", [pooled, g.op("Max", [norm, g.const(np.float32(1e-12))])],
                                    ["embedding"], name="embedding"))
    graph = helper.make_graph(
        g.nodes, "minilm_l6_v2_static7",
        [helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", HIDDEN])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS_DOMAIN, 1)],
                              producer_name="offpath-models-build")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, g.taps


def calibrate(fp32_model, taps, reader, session):
    """{key: (scale, zero point)} from the min and max each weight MatMul's input reaches
    over the calibration runs of the fp32 2-D graph."""
    model = onnx.ModelProto()
    model.CopyFrom(fp32_model)
    names = sorted({name for _, name in taps})
    model.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    sess = session(model.SerializeToString())
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    reader.rewind()
    while (feed := reader.get_next()) is not None:
        for n, v in zip(names, sess.run(names, feed)):
            lo[n], hi[n] = min(lo[n], float(v.min())), max(hi[n], float(v.max()))
    return {key: activation_params(lo[name], hi[name]) for key, name in taps}


def fp32_numpy_check(model, weights, ids, mask, session):
    """Max |2-D fp32 graph - numpy float64 reference| on the embeddings of one batch."""
    emb = session(model.SerializeToString()).run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
    return float(np.abs(emb - minilm.reference_forward(weights, ids, mask.astype(np.float64))).max())

