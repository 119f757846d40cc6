"""ONNX exports: the weight initializers, read as named tensors, renamed from the graph where needed.

Exporters keep the module's parameter names for most initializers, but `torch.onnx.export`'s default
constant folding replaces every Linear weight by a transposed copy named `onnx::MatMul_<n>`, and
identical initializers (e.g. LayerNorm weights still at 1.0) are merged under one name, the others
becoming `Identity` nodes whose outputs keep the parameter names. The node that
consumes an initializer is scoped by the module path (`/blocks/blocks.0/attn/qkv/MatMul`), so the
parameter name, and whether it was transposed, can be read back from the graph.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from vitdash.errors import VitdashError
from vitdash.load.checkpoint import TensorStore
from vitdash.load.formats.raw import RawCheckpoint

# Which input of an op is which parameter of the module that produced it.
_ROLES = {"Conv": {1: "weight", 2: "bias"}, "LayerNormalization": {1: "weight", 2: "bias"},
          "Gemm": {1: "weight", 2: "bias"}, "MatMul": {1: "weight"},
          "BatchNormalization": {1: "weight", 2: "bias", 3: "running_mean", 4: "running_var"}}


def _module_path(node_name: str) -> str:
    """`/blocks/blocks.0/attn/qkv/MatMul` -> `blocks.0.attn.qkv` (scopes repeat their parent's qualified name)."""
    path = ""
    for part in node_name.strip("/").split("/")[:-1]:
        path = part if (path and part.startswith(path + ".")) or not path else f"{path}.{part}"
    return path


def _transposed(node, index: int) -> bool:
    """A MatMul right operand is (in, out) and Gemm's B too unless transB=1; torch Linear stores (out, in)."""
    if node.op_type == "MatMul":
        return index == 1
    if node.op_type == "Gemm" and index == 1:
        return not any(a.name == "transB" and a.i == 1 for a in node.attribute)
    return False


def _names_from_graph(graph, arrays: dict) -> dict[str, tuple[str, bool]]:
    """canonical name -> (initializer, transpose?) for initializers whose own name is not the parameter's."""
    aliases: dict[str, tuple[str, bool]] = {}
    for node in graph.node:
        if (node.op_type == "Identity" and node.input and node.input[0] in arrays and node.output[0] not in arrays
                and re.fullmatch(r"\w+(\.\w+)+", node.output[0])):
            aliases[node.output[0]] = (node.input[0], False)  # merged duplicate: the output keeps the param name
            continue
        module = _module_path(node.name)
        roles = _ROLES.get(node.op_type, {})
        if not module:
            continue
        for index, source in enumerate(node.input):
            if source not in arrays:
                continue
            role = roles.get(index) or ("bias" if node.op_type == "Add" and arrays[source].ndim == 1 else None)
            target = f"{module}.{role}" if role else None
            if target and target != source and target not in arrays and target not in aliases:
                transpose = _transposed(node, index) and arrays[source].ndim == 2
                aliases[target] = (source, transpose)
    return aliases


def read(path: Path) -> RawCheckpoint:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise VitdashError("reading ONNX files needs the `onnx` package (pip install onnx)") from None
    try:
        model = onnx.load(str(path), load_external_data=True)
    except FileNotFoundError as e:
        raise VitdashError(f"{path.name}: its weights are stored in an external data file that is missing "
                           f"({e.filename or e}); keep the .onnx file and its data file in the same folder") from None
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError, ValidationError, ...: the file is unusable
        raise VitdashError(f"{path.name}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    arrays, skipped = {}, 0
    for init in model.graph.initializer:
        try:
            arr = numpy_helper.to_array(init)
        except Exception as e:  # noqa: BLE001 - unsupported/odd tensor types are reported, not fatal
            raise VitdashError(f"{path.name}: initializer {init.name!r} cannot be read ({e})") from None
        if arr.dtype.kind == "f" and arr.ndim:
            arrays[init.name] = arr
        else:
            skipped += 1  # shape constants and scalars, not weights
    if not arrays:
        raise VitdashError(f"{path.name}: the ONNX graph has no floating-point weight initializers")
    aliases = _names_from_graph(model.graph, arrays)
    tensors = {name: torch.from_numpy(arr.copy()) for name, arr in arrays.items()}
    used = {src for src, _ in aliases.values()}
    for target, (src, transpose) in aliases.items():
        tensors[target] = tensors[src].T.contiguous() if transpose else tensors[src]
    for src in used:  # an initializer that was renamed is known under its parameter name only
        if "::" in src:
            del tensors[src]
    meta = {"onnx_producer": f"{model.producer_name} {model.producer_version}".strip(),
            "onnx_opset": [o.version for o in model.opset_import], "onnx_non_weight_initializers": skipped}
    warnings = []
    if aliases:
        meta["onnx_renamed_from_graph"] = len(aliases)
        warnings.append(f"{len(aliases)} ONNX initializer(s) named from the graph's node scopes (constant-folded or "
                        "merged weights; MatMul weights transposed back to torch's layout)")
    return RawCheckpoint(TensorStore.from_tensors(tensors), "onnx", meta, warnings=warnings, files=[path])
