"""Reads a PyTorch `pytorch_model.bin` state dict into numpy arrays without importing torch.

A torch checkpoint is a zip archive: `<root>/data.pkl` pickles the state dict, whose tensors point at raw storages
stored as `<root>/data/<key>`. The unpickler below admits only the handful of globals a state dict needs, so unlike
`torch.load(weights_only=False)` it cannot run arbitrary code from a downloaded file.
"""

from __future__ import annotations

import collections
import math
import pickle
import zipfile
from typing import NamedTuple

import ml_dtypes
import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


class _Tensor(NamedTuple):
    """A tensor as the pickle describes it: a view of `storage` (flat elements) from `offset` with `shape` and
    `stride` (in elements). It becomes an array only once its bounds are checked, under its name."""

    storage: np.ndarray
    offset: int
    shape: tuple
    stride: tuple


def _rebuild_tensor(storage, offset, shape, stride, *_unused):
    return _Tensor(storage, offset, tuple(shape), tuple(stride))


def _to_array(name: str, tensor: _Tensor, path) -> np.ndarray:
    """The tensor's elements, copied out of its storage, after checking that the view stays inside the storage.

    A damaged or crafted file can claim a shape its storage does not hold; `as_strided` would then read whatever
    memory lies past it (torch.load refuses such a file).
    """
    storage, offset, shape, stride = tensor
    numbers = (offset, *shape, *stride)
    if not all(isinstance(n, int) and n >= 0 for n in numbers) or len(shape) != len(stride):
        raise ValueError(
            f"{path}: tensor {name!r} has offset {offset!r}, shape {shape!r} and strides {stride!r}; a tensor of a "
            "state dict has non-negative integers there, one stride per axis. The file is corrupt."
        )
    last = offset + sum((size - 1) * step for size, step in zip(shape, stride, strict=True))
    if math.prod(shape) and last >= storage.size:
        raise ValueError(
            f"{path}: tensor {name!r} of shape {shape} (offset {offset}, strides {stride}) reaches element {last} of "
            f"a storage of {storage.size} elements; the file is truncated or corrupt: download it again."
        )
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=shape, strides=tuple(step * itemsize for step in stride)
    )
    return np.array(view)  # own the memory: the storage buffer is shared between tensors


def _rebuild_parameter(tensor, *_unused):
    return tensor


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, root: str):
        super().__init__(file)
        self._archive, self._root, self._storages = archive, root, {}

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a PyTorch state dict")

    def persistent_load(self, pid):
        _, storage_type, key, _location, _numel = pid
        if key not in self._storages:
            raw = self._archive.read(f"{self._root}/data/{key}")
            self._storages[key] = np.frombuffer(raw, dtype=storage_type.dtype)
        return self._storages[key]


# A legacy checkpoint opens with a pickle (protocol 2) of torch's magic number, the long 0x1950a86a20f9469cfc6c.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def _starts_with(path, prefix: bytes) -> bool:
    with open(path, "rb") as f:
        return f.read(len(prefix)) == prefix


def load_state_dict(path) -> dict[str, np.ndarray]:
    """Returns `{name: array}` from a PyTorch zip checkpoint (torch >= 1.6 format).

    Raises:
        ValueError: the file is not a PyTorch zip checkpoint, is truncated, or holds something other than tensors.
    """
    if not zipfile.is_zipfile(path) and _starts_with(path, _LEGACY_MAGIC):
        raise ValueError(
            f"{path} is in the legacy PyTorch format (torch < 1.6, a bare pickle, not a zip archive), which flaxbert "
            "does not read: convert it to model.safetensors, or re-save it with a current torch.save."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pickles:
                raise ValueError("no data.pkl inside")
            root = pickles[0].rpartition("/")[0]
            with archive.open(pickles[0]) as f:
                state = _StateDictUnpickler(f, archive, root).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as e:
        raise ValueError(
            f"{path} is not a readable PyTorch checkpoint ({e}); the file may be truncated or corrupt: "
            "download it again, or convert it to model.safetensors."
        ) from e
    if not isinstance(state, dict) or not all(isinstance(v, _Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a flat state dict of tensors.")
    return {name: _to_array(name, tensor, path) for name, tensor in state.items()}
