"""Ways to quantize the fp32 minilm-insult graph (the head, `head_mm`, always stays fp32).

* `dynamic`: int8 activation scales computed at run time over the whole input tensor, so a
  text's score depends on its batch neighbours and padding (the v1 model).
* `static`: int8 QDQ with per-channel weights and activation scales fixed by calibration on
  train.csv: a row's result no longer depends on the other rows.
* `nbits8`: weight-only 8-bit `MatMulNBits`; activations stay float."""

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
