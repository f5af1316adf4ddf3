"""flaxbert's own reader of `pytorch_model.bin` files, which never imports torch nor runs code from the file."""

import collections
import io
import pickle
import zipfile

import numpy as np
import pytest
import torch

from flaxbert.presets import torch_pickle


class _Storage:
    pass


class _Tensor:
    """Pickles as torch pickles a tensor, with any offset, shape and strides, over one storage of 4 floats."""

    def __init__(self, offset, shape, stride):
        self.args = (offset, shape, stride)

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (_Storage(), *self.args, False, collections.OrderedDict())


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, "0", "cpu", 4) if isinstance(obj, _Storage) else None


def _write(path, **tensors):
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(collections.OrderedDict(tensors))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/data/0", np.arange(4, dtype="f4").tobytes())
        archive.writestr("archive/version", "3\n")
    return path


def test_views_inside_their_storage_load_like_torch(tmp_path):
    path = _write(
        tmp_path / "ok.bin", t=_Tensor(0, (2, 2), (1, 2)), row=_Tensor(3, (1,), (1,)), e=_Tensor(9, (0,), (1,))
    )
    ours = torch_pickle.load_state_dict(path)
    for name, want in torch.load(path, weights_only=True).items():
        np.testing.assert_array_equal(ours[name], want.numpy())


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (
            _Tensor(0, (512, 512), (512, 1)),
            r"tensor 'w' of shape \(512, 512\) .* reaches element 262143 of a storage of 4",
        ),
        (_Tensor(3, (2,), (1,)), r"tensor 'w' of shape \(2,\) \(offset 3, strides \(1,\)\) reaches element 4"),
        (_Tensor(3, (2,), (-1,)), r"tensor 'w' has offset 3, shape \(2,\) and strides \(-1,\)"),
        (_Tensor(4, (1,), (1,)), r"tensor 'w' of shape \(1,\) \(offset 4, strides \(1,\)\) reaches element 4"),
        (_Tensor(-1, (2,), (1,)), r"tensor 'w' has offset -1, shape \(2,\) and strides \(1,\)"),
    ],
    ids=["shape", "offset", "negative_stride", "one_element_past_the_end", "negative_offset"],
)
def test_a_view_past_its_storage_is_refused(tmp_path, tensor, message):
    """A tensor claiming more elements than its storage holds was read from the memory past it (garbage)."""
    path = _write(tmp_path / "bad.bin", w=tensor)
    with pytest.raises(ValueError, match=message):
        torch_pickle.load_state_dict(path)


def test_every_storage_type_loads_as_torch_reads_it(tmp_path):
    """Each dtype torch writes into a state dict, its bytes read as that dtype (a float64 file read as float32 is
    garbage of the right shape)."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal((3, 5)) * 100
    state = {str(dtype): torch.from_numpy(values).to(dtype)[:, 1:4] for dtype in
             (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
              torch.int8, torch.uint8, torch.bool)}  # fmt: skip
    torch.save(state, tmp_path / "all.bin")
    ours = torch_pickle.load_state_dict(tmp_path / "all.bin")
    assert set(ours) == set(state)
    for name, want in state.items():
        assert ours[name].dtype.name == name.removeprefix("torch."), name  # numpy's names are torch's
        np.testing.assert_array_equal(np.asarray(ours[name], np.float64), want.double().numpy(), err_msg=name)
