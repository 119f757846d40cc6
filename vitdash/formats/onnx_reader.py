"""ONNX exports: the initializers, read as named tensors (canonical when the exporter kept timm names)."""
from __future__ import annotations

from pathlib import Path

import torch

from vitdash.checkpoint import TensorStore
from vitdash.errors import VitdashError
from vitdash.formats import RawCheckpoint


def read(path: Path) -> RawCheckpoint:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise VitdashError("reading ONNX files needs the `onnx` package (pip install onnx)") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise VitdashError(f"{path.name}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    tensors = {}
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind in "fiu" and arr.ndim:
            tensors[init.name] = torch.from_numpy(arr.copy())
    if not tensors:
        raise VitdashError(f"{path.name}: the ONNX graph has no weight initializers")
    meta = {"onnx_producer": f"{model.producer_name} {model.producer_version}".strip(),
            "onnx_opset": [o.version for o in model.opset_import]}
    return RawCheckpoint(TensorStore.from_tensors(tensors), "onnx", meta, files=[path])
