"""Weights: one flat float32 array for trainable parameters, one for non-trainable ones.

Each parameter is a view into its array (``store.view(name)``), so an optimizer updates every
weight with one kernel over one array and saving is one write. Parameter names are
``<layer>/<weight>`` (``<layer>/<sublayer>/<weight>`` inside a nested model); they are also the
tensor names in safetensors files.

The safetensors format is small enough to read and write here without a dependency: an 8-byte
little-endian header length, a JSON header ``{name: {dtype, shape, data_offsets}}``, then the
raw little-endian data. Files are written atomically (a temporary file, then a rename).
"""

from __future__ import annotations

import itertools
import json
import os
import struct

import numpy as np

from ..specs.atomic import write_bytes_atomic
from ..specs.errors import WeightsError
from .initializers import initialize, param_rng

_ST_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I32": np.int32, "I64": np.int64,
              "BF16": None}  # fmt: skip
MAX_HEADER = 100 * 1024 * 1024


_CLOCK = itertools.count(1)


class WeightStore:
    """The weights of a model. ``params`` is the plan's parameter table (name, shape, offset...).

    ``version`` is when the values last changed, on a clock shared by every store (0: as
    initialized): ``assign`` and ``touch`` (after a training step) advance it, so models that
    hold copies of the same weights (a model and the sub-models it calls) can tell which copy
    is newest (``RunMixin._pull_weights``)."""

    version = 0

    def __init__(self, params, seed: int | None = None) -> None:
        self.params = {p.name: p for p in params}
        self.tp = np.zeros(sum(p.size for p in params if p.trainable), np.float32)
        self.ntp = np.zeros(sum(p.size for p in params if not p.trainable), np.float32)
        self.seed = seed
        for p in params:
            self.view(p.name)[...] = initialize(p.initializer, p.shape, param_rng(seed, p.name))

    def view(self, name: str) -> np.ndarray:
        p = self.params[name]
        flat = self.tp if p.trainable else self.ntp
        return flat[p.offset : p.offset + p.size].reshape(p.shape)

    def names(self) -> list[str]:
        return list(self.params)

    def assign(self, name: str, value, *, where: str = "") -> None:
        p = self.params[name]
        arr = np.asarray(value)
        if arr.shape != tuple(p.shape):
            raise WeightsError(f"{where}weight '{name}': expected shape {tuple(p.shape)}, found {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number):
            raise WeightsError(f"{where}weight '{name}': expected numbers, found dtype {arr.dtype}")
        self.view(name)[...] = arr.astype(np.float32, copy=False)
        self.touch()

    def touch(self) -> None:
        """Mark the values changed (a training step writes ``tp``/``ntp`` in place)."""
        self.version = next(_CLOCK)


# ---------------------------------------------------------------------- safetensors


def write_safetensors(path, tensors: dict[str, np.ndarray], metadata: dict | None = None) -> None:
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr, dtype=np.float32)
        data = a.astype("<f4", copy=False).tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # align the data to 8 bytes
    try:
        write_bytes_atomic(path, struct.pack("<Q", len(head)) + head + b"".join(blobs))
    except OSError as e:  # a missing folder, no permission, a full disk: the old file is intact
        raise WeightsError(f"{os.fspath(path)}: cannot write the weights file: {e.strerror or e}") from None


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Read every tensor of a safetensors file; a malformed file gets one clear WeightsError."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise WeightsError(f"{name}: cannot read the weights file: {e.strerror or e}") from None
    if len(raw) < 8:
        raise WeightsError(f"{name}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER or 8 + n > len(raw):
        raise WeightsError(f"{name}: not a safetensors file (header length {n} does not fit the file)")
    try:
        header = json.loads(raw[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WeightsError(f"{name}: not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{name}: not a safetensors file (header is not a mapping)")
    data = memoryview(raw)[8 + n :]
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            dt = _ST_DTYPES[info["dtype"]]
            shape = tuple(int(d) for d in info["shape"])
            a, b = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"{name}: tensor '{key}' has a malformed header entry") from None
        if dt is None:
            raise WeightsError(f"{name}: tensor '{key}' has dtype {info['dtype']}, which nnspec cannot read")
        count = int(np.prod(shape)) if shape else 1
        if not (0 <= a <= b <= len(data)) or b - a != count * np.dtype(dt).itemsize:
            raise WeightsError(f"{name}: tensor '{key}' data offsets {[a, b]} do not fit its shape {shape}")
        out[key] = np.frombuffer(data[a:b], dtype=np.dtype(dt).newbyteorder("<")).reshape(shape).astype(np.float32)
    return out
