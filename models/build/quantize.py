"""Ways to quantize the fp32 minilm-insult graph (the head, `head_mm`, always stays fp32).

* `dynamic`: int8 activation scales computed at run time over the whole input tensor, so a
  text's score depends on its batch neighbours and padding (the v1 model).
* `static`: int8 QDQ with per-channel weights and activation scales fixed by calibration on
  train.csv: a row's result no longer depends on the other rows.
* `nbits8`: weight-only 8-bit `MatMulNBits`; activations stay float.
* `weights8`: int8 weights turned back into fp32 at session creation: fp32 arithmetic (v2).
* `static7`: static int8 arithmetic, 7-bit weights, on a 2-D fused-QKV graph (`static7.py`)."""

import random

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_dynamic, quantize_static)

CALIBRATION_TEXTS = 256
CALIBRATION_SEED = 0


def weight_matmuls(path):
    """MatMul nodes whose second input is a weight (not activation x activation)."""
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and n.input[1] in inits and n.name != "head_mm"]


def activation_matmuls(path):
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] not in inits]


def dynamic(src, dst):
    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gather"], nodes_to_exclude=["head_mm"])


class TrainTexts(CalibrationDataReader):
    """A fixed random sample of train.csv, one text per run (no padding in the ranges)."""

    def __init__(self, tok, texts):
        sample = random.Random(CALIBRATION_SEED).sample(texts, CALIBRATION_TEXTS)
        self.feeds = []
        for text in sample:
            ids = np.array([tok.encode(text).ids], dtype=np.int64)
            self.feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
        self.it = iter(self.feeds)

    def get_next(self):
        return next(self.it, None)

    def rewind(self):
        self.it = iter(self.feeds)


def static(src, dst, tok, train_texts, method=CalibrationMethod.MinMax, attention=False):
    exclude = ["head_mm"] + ([] if attention else activation_matmuls(src))
    quantize_static(str(src), str(dst), TrainTexts(tok, train_texts), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul", "Gather"], nodes_to_exclude=exclude,
                    calibrate_method=method)


def nbits8(src, dst, accuracy_level=None):
    from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                 MatMulNBitsQuantizer)
    config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, bits=8,
                                          accuracy_level=accuracy_level)
    q = MatMulNBitsQuantizer(onnx.load(str(src)), nodes_to_exclude=["head_mm"], algo_config=config)
    q.process()
    q.model.save_model_to_file(str(dst))


def weights8(src, dst):
    """int8 weights, fp32 arithmetic: each MatMul weight (but the head's) and the embedding
    tables are stored as int8 with one scale per output column (per row for the tables) and
    turned back into float by `Cast` and `Mul`, which ONNX Runtime folds into fp32
    initializers when the session is created. Every run then computes in fp32: a row's
    score depends neither on its neighbours nor on the CPU's int8 instructions (dynamic
    int8 gave scores 0.12-0.19 apart on an AVX2 CPU and one with AVX-512 VNNI)."""
    from onnx import helper, numpy_helper
    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    targets = {}  # initializer name -> axis the scales run along
    for node in graph.node:
        if node.name == "head_mm":
            continue
        if node.op_type == "MatMul" and node.input[1] in inits:
            targets[node.input[1]] = 0  # [K, N]: one scale per column
        elif node.op_type == "Gather" and node.input[0] in inits:
            targets[node.input[0]] = 1  # [V, D]: one scale per row
    new_nodes = []
    for name, axis in sorted(targets.items()):
        w = numpy_helper.to_array(inits[name]).astype(np.float32)
        scale = np.abs(w).max(axis=axis, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        graph.initializer.remove(inits[name])
        graph.initializer.extend([numpy_helper.from_array(q, f"{name}_q8"),
                                  numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale")])
        new_nodes += [helper.make_node("Cast", [f"{name}_q8"], [f"{name}_f"], name=f"{name}_cast",
                                       to=onnx.TensorProto.FLOAT),
                      helper.make_node("Mul", [f"{name}_f", f"{name}_scale"], [name], name=f"{name}_dq")]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def static7(weights, head, dst, tok, train_texts, session):
    """Static int8 arithmetic with 7-bit weights on a 2-D, fused-QKV graph (`static7.py`):
    activation scales calibrated on train.csv (`TrainTexts`), fixed in the file. The fp32
    2-D graph it is calibrated on is first checked against the numpy float64 reference.
    `head` is the fitted logistic regression (appended in fp32, as `minilm.append_head`);
    `session(bytes_or_path)` opens an ONNX Runtime session. Returns the numpy check's
    max |difference|."""
    import minilm
    import static7 as s7
    fp32, taps = s7.build_encoder(weights)
    ids = np.array([tok.encode("You are an idiot! see you at the standup tomorrow").ids], dtype=np.int64)
    diff = s7.fp32_numpy_check(fp32, weights, ids, np.ones_like(ids), session)
    assert diff < 1e-5, f"2-D graph differs from the numpy reference by {diff}"
    act = s7.calibrate(fp32, taps, TrainTexts(tok, train_texts), session)
    model, _ = s7.build_encoder(weights, act)
    model = minilm.append_head(model, head.coef_[0], head.intercept_[0])
    onnx.save(model, str(dst))
    print(f"static7: 2-D fp32 graph vs numpy {diff:.1e}; {len(act)} activation ranges calibrated")
    return diff
