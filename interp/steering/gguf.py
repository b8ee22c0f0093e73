"""GGUF control vectors, as llama.cpp loads them (and as repeng writes them).

llama.cpp's loader (`common_control_vector_load_one` in common/common.cpp) takes a file whose
tensors are all named `direction.N` with N >= 1, each F32 and 1-D of the model's width; one bad
tensor and it skips the whole file with only a log line. It copies `direction.N` to offset
(N-1) * n_embd of its buffer ("layer 1 at [0]"), `llama_adapter_cvec::apply` gives buffer slot
(il-1) to layer il for il = 1 .. n_layer-1, and the graph adds `tensor_for(il)` to the output of
layer il (after the FFN's residual add, before the next layer):

    direction.N  <->  TransformerLens blocks.N.hook_resid_post   (N = 1 .. n_layers - 1)

The output of block 0 cannot be steered from a GGUF (direction.0 is invalid). The added vector
is `strength * direction.N`, at every position of the prompt and of the generated tokens
(`--control-vector-scaled FILE STRENGTH`; `--control-vector` is strength 1). repeng's
`ControlVector.export_gguf` uses the same numbering (the index into `model.layers` whose output
it steers) and the keys `general.architecture = controlvector`, `controlvector.model_hint` (the
HF `model_type`) and `controlvector.layer_count` (number of tensors); llama.cpp reads neither
key. We also write our own metadata under `interp.steering` (JSON), which llama.cpp ignores.

An exported file holds `effective(scale)` of the vector: what our hooks add at that scale, so
llama.cpp at strength s equals our hooks at scale * s.
"""

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from interp.steering.vector import DEFAULT_SITE, SteeringError, SteeringVector

ARCH = "controlvector"
TENSOR = re.compile(r"^direction\.(\d+)$")


def write_gguf(
    path: str | Path,
    vector: SteeringVector,
    scale: float = 1.0,
    model_hint: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `vector.effective(scale)` as a llama.cpp control vector (atomically).

    Only `hook_resid_post` vectors at layers >= 1 can be expressed (see the module docstring).
    `model_hint` defaults to the vector's recorded HF `model_type` (else "llama").
    """
    import gguf
    import numpy as np

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --force (overwrite=True) to replace it")
    if vector.site != DEFAULT_SITE:
        raise SteeringError(
            f"llama.cpp adds control vectors to each layer's output (hook_resid_post); this "
            f"vector is at {vector.site!r} and cannot be exported to GGUF"
        )
    if 0 in vector.layers:
        raise SteeringError(
            "llama.cpp cannot steer the output of block 0 (direction.0 is invalid and makes it "
            "drop the whole file); select layers >= 1 (e.g. --layers 1-15)"
        )
    hint = model_hint or str(vector.extra.get("model_type") or "llama")
    eff = vector.effective(scale).numpy().astype(np.float32)
    meta = vector.metadata() | {"export_scale": float(scale)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, ARCH)
        writer.add_string(f"{ARCH}.model_hint", hint)
        writer.add_uint32(f"{ARCH}.layer_count", len(vector.layers))
        writer.add_string("interp.steering", json.dumps(meta))
        for row, layer in sorted(zip(eff, vector.layers, strict=True), key=lambda x: x[1]):
            writer.add_tensor(f"direction.{layer}", np.ascontiguousarray(row))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def read_gguf(path: str | Path, model_id: str | None = None) -> SteeringVector:
    """A control-vector GGUF (ours, repeng's, or any file llama.cpp would load) as an "absolute"
    `SteeringVector` at `blocks.N.hook_resid_post`, checked against llama.cpp's loader rules:
    a bad file raises `SteeringError` saying what is wrong (llama.cpp would drop it silently).
    Nothing in the file is executed."""
    import gguf
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise SteeringError(f"no GGUF file at {path}")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as err:  # the reader raises ValueError, struct/numpy errors on bad bytes
        raise SteeringError(
            f"{path} is not a readable GGUF file ({type(err).__name__}: {err})"
        ) from None
    arch = _field(reader, "general.architecture")
    if arch != ARCH:
        raise SteeringError(
            f"{path} has general.architecture {arch!r}; a control vector has {ARCH!r}"
        )
    if not reader.tensors:
        raise SteeringError(f"{path} holds no direction.N tensors")
    layers, rows, width = [], [], None
    for t in reader.tensors:
        match = TENSOR.match(t.name)
        if not match:
            raise SteeringError(
                f"{path}: tensor {t.name!r} is not named direction.N; llama.cpp drops a file "
                "with any other tensor"
            )
        n = int(match.group(1))
        if n < 1:
            raise SteeringError(
                f"{path}: tensor {t.name!r} has layer index 0; llama.cpp accepts N >= 1 only "
                "(direction.N steers the output of layer N) and drops the whole file"
            )
        if t.tensor_type != gguf.GGMLQuantizationType.F32:
            raise SteeringError(f"{path}: {t.name} is {t.tensor_type.name}; llama.cpp needs F32")
        dims = [int(d) for d in t.shape if True]
        if len(dims) != 1:
            raise SteeringError(f"{path}: {t.name} has shape {dims}; llama.cpp needs 1-D tensors")
        if width is not None and dims[0] != width:
            raise SteeringError(
                f"{path}: {t.name} has {dims[0]} elements, the earlier directions {width}"
            )
        width = dims[0]
        if n in layers:
            raise SteeringError(f"{path}: direction.{n} appears twice")
        layers.append(n)
        rows.append(torch.from_numpy(np.array(t.data, dtype=np.float32).reshape(-1)))
    count = _field(reader, f"{ARCH}.layer_count")
    if count is not None and int(count) != len(layers):
        raise SteeringError(
            f"{path}: {ARCH}.layer_count is {count} but it holds {len(layers)} direction tensors"
        )
    hint = _field(reader, f"{ARCH}.model_hint")
    ours = _field(reader, "interp.steering")
    meta: dict[str, Any] = {}
    if isinstance(ours, str):
        try:
            meta = json.loads(ours)
        except json.JSONDecodeError:
            meta = {}
        meta = meta if isinstance(meta, dict) else {}
    order = sorted(range(len(layers)), key=lambda i: layers[i])
    extra = {"gguf": str(path), "model_hint": hint, "model_type": hint}
    if meta:
        extra["export_scale"] = meta.get("export_scale")
    return SteeringVector(
        torch.stack([rows[i] for i in order]),
        tuple(layers[i] for i in order),
        model_id=model_id if model_id is not None else meta.get("model_id"),
        d_model=int(width),  # type: ignore[arg-type]
        n_layers=meta.get("n_layers") if isinstance(meta.get("n_layers"), int) else None,
        method=str(meta.get("method", "gguf")),
        convention="absolute",
        concept=meta.get("concept") if isinstance(meta.get("concept"), str) else None,
        source_hash=meta.get("source_hash") if isinstance(meta.get("source_hash"), str) else None,
        positions=str(meta.get("positions", "unknown")),
        extra=extra,
    )
