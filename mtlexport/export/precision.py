"""FP16 ONNX with FP32 inputs and outputs, written with plain onnx APIs.

The recipe (recorded in the manifest as ``fp16-io-fp32``): every float32 initializer,
constant and intermediate tensor becomes float16; a Cast to float16 follows each float32 graph
input and a Cast back to float32 precedes each graph output, so callers keep float32 I/O. Some
inputs must stay float32 whatever the model's precision (Resize ``scales``, per the ONNX
operator schema); their producers are kept in float32. This is what TensorRT 11, which removed
precision builder flags, needs: the precision is baked into the model.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

RECIPE = "fp16-io-fp32"

# (op_type, input index) pairs whose tensor must stay float32 by the ONNX schema.
_FP32_INPUTS: frozenset[tuple[str, int]] = frozenset({("Resize", 1), ("Resize", 2)})
_FP16_MAX = float(np.finfo(np.float16).max)


def convert_to_fp16(model: Any) -> Any:
    """A float16 copy of the float32 ``onnx.ModelProto`` ``model`` with float32 I/O kept."""
    import onnx
    from onnx import TensorProto, helper

    model = _copy(model)
    graph = model.graph
    keep32 = _fp32_tensors(graph)
    _convert_initializers(graph, keep32)
    _convert_nodes(graph, keep32)

    # Float32 graph inputs: cast once to float16 and feed every consumer the cast tensor.
    casts_in = []
    for inp in graph.input:
        if inp.type.tensor_type.elem_type != TensorProto.FLOAT or inp.name in keep32:
            continue
        half = f"{inp.name}__fp16"
        casts_in.append(helper.make_node("Cast", [inp.name], [half], to=TensorProto.FLOAT16, name=f"{inp.name}__to_fp16"))
        _rename_uses(graph, inp.name, half)
    # Float32 graph outputs: the producer writes a float16 tensor, a Cast restores the name.
    casts_out = []
    for out in graph.output:
        if out.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        half = f"{out.name}__fp16"
        _rename_outputs(graph, out.name, half)
        _rename_uses(graph, out.name, half)
        casts_out.append(helper.make_node("Cast", [half], [out.name], to=TensorProto.FLOAT, name=f"{out.name}__to_fp32"))
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
    # Intermediate types changed: drop stale value_info and let shape inference redo it.
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _copy(model: Any) -> Any:
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _fp32_tensors(graph: Any) -> set[str]:
    """Tensors that must stay float32, and (transitively) the float tensors producing them."""
    producers = {out: node for node in graph.node for out in node.output}
    keep: set[str] = set()
    stack = [node.input[i] for node in graph.node for i in range(len(node.input))
             if (node.op_type, i) in _FP32_INPUTS and node.input[i]]
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        keep.add(name)
        node = producers.get(name)
        # Follow only nodes that compute in float (shape ops produce int64 and end the walk).
        if node is not None and node.op_type not in ("Shape", "Size", "Cast"):
            stack.extend(i for i in node.input if i)
    return keep


def _convert_initializers(graph: Any, keep32: set[str]) -> None:
    from onnx import TensorProto, numpy_helper

    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and init.name not in keep32:
            init.CopyFrom(numpy_helper.from_array(_to_half(numpy_helper.to_array(init)), init.name))


def _convert_nodes(graph: Any, keep32: set[str]) -> None:
    from onnx import TensorProto, helper, numpy_helper

    for node in graph.node:
        if any(o in keep32 for o in node.output):
            continue
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
            elif attr.type == helper.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(_to_half(numpy_helper.to_array(attr.t)), attr.t.name))


def _to_half(array: np.ndarray) -> np.ndarray:
    # Saturate instead of overflowing to inf (e.g. -1e9 masking constants).
    return np.clip(array, -_FP16_MAX, _FP16_MAX).astype(np.float16)


def _rename_uses(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def _rename_outputs(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new


def float_tensor_census(model: Any) -> dict[str, int]:
    """Counts of float32 and float16 initializers (a quick check that conversion happened)."""
    from onnx import TensorProto

    counts: dict[str, int] = defaultdict(int)
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            counts["float32"] += 1
        elif init.data_type == TensorProto.FLOAT16:
            counts["float16"] += 1
    return dict(counts)
