"""LayerNorm's backward pass as one Pallas kernel (NVIDIA GPUs): the same gradients as XLA's formulas.

On CPU the kernel runs in Pallas's interpreter, so these tests check its blocking, chunking and sums; that Triton
takes it is checked by lowering it for CUDA (`benchmarks/gpu_offline.py` compiles it for an H200 as well)."""

import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mesh_fit import fit_on_a_mesh, fit_through_kernel

from flaxbert.models import dropout, layer_norm, layer_norm_kernel
from flaxbert.parallel import make_mesh

EPSILON = 1e-12
_interpreted = functools.partial(layer_norm_kernel.backward, interpret=True)
_residual_interpreted = functools.partial(layer_norm_kernel.residual_backward, interpret=True)


def _inputs(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape) * 3.0 + 0.7, dtype)
    dy = jnp.asarray(rng.standard_normal(shape), dtype)
    scale = jnp.asarray(rng.uniform(0.5, 1.5, shape[-1]), jnp.float32)
    return x, dy, scale


def _xla(x, dy, scale):
    """The XLA path of `layer_norm._backward` (statistics from the forward pass)."""
    _, mean, inv_std = layer_norm._statistics(x, EPSILON)
    return layer_norm._backward(EPSILON, x.dtype, (x, mean, inv_std, scale), dy)


@pytest.mark.parametrize(
    "shape, dtype",
    [
        ((4, 128, 768), jnp.bfloat16),  # BERT-base's rows: 3 chunks of 256, 128 steps of 4 rows a program
        ((3, 7, 384), jnp.float32),  # MiniLM's width (3 x 128); 21 rows: one row a step
        ((6, 1, 48), jnp.float32),  # the [CLS]-only layer's [B, 1, D]; 3 chunks of 16
        ((2, 4096, 128), jnp.float32),  # 8,192 rows: several steps a program, at most 1,024 programs
    ],
)
def test_the_kernel_computes_the_xla_paths_gradients(shape, dtype):
    x, dy, scale = _inputs(shape, dtype)
    dx, d_scale, d_bias = jax.jit(lambda *a: _interpreted(*a, EPSILON))(x, dy, scale)
    want_dx, want_scale, want_bias = jax.jit(_xla)(x, dy, scale)
    assert dx.dtype == x.dtype and d_scale.dtype == d_bias.dtype == jnp.float32
    if dtype == jnp.bfloat16:  # both round the same float32 value once; the sums' order may move it by one step
        np.testing.assert_allclose(dx.astype(np.float32), want_dx.astype(np.float32), rtol=2**-7, atol=2**-12)
    else:
        np.testing.assert_allclose(dx, want_dx, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(d_scale, want_scale, rtol=2e-5, atol=2e-4)
    np.testing.assert_allclose(d_bias, want_bias, rtol=2e-5, atol=2e-4)


def _keep(shape, seed=1):
    return jnp.asarray(np.random.default_rng(seed).random(shape) >= 0.1, jnp.int8)


def _xla_residual(x, branch, keep, dy, scale, keep_scale):
    """`residual_backward`'s values by XLA's operations, (ds, dh, d_scale, d_bias, d_h_bias), the LayerNorm's input
    `x + dropped(branch)` computed in x's dtype as the forward pass computes it."""
    c = jnp.asarray(keep_scale, x.dtype)
    s = x + (branch if keep is None else jnp.where(keep != 0, branch * c, 0))
    ds, d_scale, d_bias = _xla(s, dy, scale)
    dh = ds if keep is None else jnp.where(keep != 0, ds * c, 0)
    return ds, dh, d_scale, d_bias, dh.astype(jnp.float32).sum(tuple(range(dh.ndim - 1)))


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize(
    "shape, dtype",
    [((4, 128, 768), jnp.bfloat16), ((3, 7, 384), jnp.float32), ((6, 1, 48), jnp.float32)],
)
def test_the_residual_kernel_also_gives_the_branchs_gradients(shape, dtype, masked):
    """The kernel adds the LayerNorm's input up from x and the branch, as the forward pass did (rounded in x's dtype:
    the keep scale is 1.109375, 10/9 in bfloat16). With a dropout mask, dh is ds dropped as the forward pass dropped
    the branch (0 where dropped, times the keep scale elsewhere); without one it is ds itself. The third row of sums
    is dh's, the branch bias's."""
    x, dy, scale = _inputs(shape, dtype)
    branch = jnp.asarray(np.random.default_rng(2).standard_normal(shape), dtype)
    keep = _keep(shape) if masked else None
    keep_scale = float(np.asarray(1 / 0.9, dtype))
    got = jax.jit(lambda *a: _residual_interpreted(*a, EPSILON, keep_scale))(x, branch, keep, dy, scale)
    want = _xla_residual(x, branch, keep, dy, scale, keep_scale)  # op by op: each rounds (jit may keep more bits)
    assert [a.dtype for a in got] == [dtype, dtype, jnp.float32, jnp.float32, jnp.float32]
    for a, b in zip(got[:2], want[:2], strict=True):
        if dtype == jnp.bfloat16:  # each rounds its float32 value once (the reference rounds ds before dropping it)
            np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=2**-7, atol=2**-12)
        else:
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    if masked:
        assert not np.any(np.asarray(got[1], np.float32)[np.asarray(keep) == 0])  # dropped where the mask drops
    else:  # the kernel's one output, returned as both (`test_the_kernel_blocks_rows_in_steps_and_programs`)
        np.testing.assert_array_equal(np.asarray(got[0], np.float32), np.asarray(got[1], np.float32))
    # the kernel sums dh in float32 before rounding it: against the float32 reference (the same inputs, upcast)
    s = x + (branch if keep is None else jnp.where(keep != 0, branch * jnp.asarray(keep_scale, dtype), 0))
    wide = _xla_residual(s.astype(jnp.float32), jnp.zeros(shape), keep, dy.astype(jnp.float32), scale, keep_scale)
    for a, b in zip(got[2:], wide[2:], strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-4)


def test_the_kernel_blocks_rows_in_steps_and_programs():
    """8,192 rows of 128: 4 rows a step, 8 steps a program, 1,024 programs, each one row of partial sums (three with
    a branch, whose dh is a second output where a dropout mask is given)."""
    x, dy, scale = _inputs((8192, 128), jnp.float32)

    def rows(branch, keep):
        return jax.jit(lambda *a: layer_norm_kernel._backward_rows(*a, EPSILON, 1.0, True)).trace(
            x, branch, keep, dy, scale
        ).out_info  # fmt: skip

    (dx,), partial = rows(None, None)
    assert dx.shape == (8192, 128) and partial.shape == (1024, 2, 128)
    (dx,), partial = rows(x, None)
    assert partial.shape == (1024, 3, 128)
    (dx, dh), partial = rows(x, _keep((8192, 128)))
    assert dx.shape == dh.shape == (8192, 128) and partial.shape == (1024, 3, 128)


def _device(platform="gpu", version="cuda 12.9", capability="9.0"):
    return types.SimpleNamespace(platform=platform, client=types.SimpleNamespace(platform_version=version),
                                 compute_capability=capability)  # fmt: skip


def test_applies_to_recent_nvidia_gpus_and_bert_widths():
    assert layer_norm_kernel.applies(_device(), (32, 128, 768))
    assert layer_norm_kernel.applies(_device(), (32, 1, 384))
    assert layer_norm_kernel.applies(_device(), (5, 1024))
    assert not layer_norm_kernel.applies(_device(capability="7.5"), (32, 128, 768))
    assert not layer_norm_kernel.applies(_device(version="rocm 6.0", capability=None), (32, 128, 768))
    assert not layer_norm_kernel.applies(jax.devices("cpu")[0], (32, 128, 768))
    assert not layer_norm_kernel.applies(_device(), (768,))  # no rows
    assert not layer_norm_kernel.applies(_device(), (0, 128, 768))  # nothing to compute
    assert not layer_norm_kernel.applies(_device(), (4, 40))  # 5 chunks of 8: too narrow for Triton's blocks
    assert not layer_norm_kernel.applies(_device(), (4, 17 * 64))  # 17 chunks
    with jax.sharding.use_abstract_mesh(make_mesh(data=4, fsdp=2).abstract_mesh):
        assert layer_norm_kernel.applies(_device(), (16, 128, 768))
        assert not layer_norm_kernel.applies(_device(), (6, 128, 768))  # 6 rows do not split over 8 devices


def test_the_kernels_lower_to_triton_for_a_cuda_gpu():
    """Cross-lowering for CUDA on this CPU host runs Pallas's Triton lowering: an op without a Triton rule or an
    array shape Triton cannot take fails here rather than on a GPU."""
    spec = jax.ShapeDtypeStruct((4, 128, 768), jnp.bfloat16)
    scale = jax.ShapeDtypeStruct((768,), jnp.float32)
    keep = jax.ShapeDtypeStruct((4, 128, 768), jnp.int8)
    plain = jax.jit(lambda x, dy, s: layer_norm_kernel.backward(x, dy, s, EPSILON))
    residual = jax.jit(lambda x, h, k, dy, s: layer_norm_kernel.residual_backward(x, h, k, dy, s, EPSILON, 1.109375))
    for lowered in (plain.trace(spec, spec, scale), residual.trace(spec, spec, keep, spec, scale)):
        assert lowered.lower(lowering_platforms=("cuda",)).as_text().count("__gpu$xla.gpu.triton") == 1


def _layer_norm_grads(x, dy, scale, bias):
    def loss(x, scale, bias):
        return jnp.sum(layer_norm.layer_norm(x, scale, bias, EPSILON, x.dtype).astype(jnp.float32) * dy)

    return jax.grad(loss, argnums=(0, 1, 2))(x, scale, bias)


def test_layer_norm_takes_its_backward_pass_from_the_kernel_where_it_applies(monkeypatch):
    x, dy, scale = _inputs((2, 16, 96), jnp.float32)
    bias = jnp.linspace(-1.0, 1.0, 96, dtype=jnp.float32)
    by_xla = jax.jit(_layer_norm_grads)(x, dy, scale, bias)
    calls = []
    monkeypatch.setattr(layer_norm_kernel, "applies", lambda device, shape: True)
    monkeypatch.setattr(layer_norm_kernel, "backward", lambda *a: calls.append(a[0].shape) or _interpreted(*a))
    by_kernel = jax.jit(lambda *a: _layer_norm_grads(*a))(x, dy, scale, bias)  # a new trace
    assert calls == [(2, 16, 96)]
    for a, b in zip(by_kernel, by_xla, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5)


def _residual_grads(x, h, h_bias, keep, dy, scale, bias, composed: bool):
    """The gradients of x, h, h_bias, scale and bias of `residual_layer_norm` or, `composed`, of autodiff through
    `layer_norm(x + dropped(h + h_bias))`."""

    def loss(x, h, h_bias, scale, bias):
        if composed:
            s = x + dropout.dropped((h + h_bias).reshape(x.shape), keep, 0.1)
            y = layer_norm.layer_norm(s, scale, bias, EPSILON, x.dtype)
        else:
            y = layer_norm.residual_layer_norm(x, h, h_bias, keep, scale, bias, 0.1, EPSILON, x.dtype)
        return jnp.sum(y.astype(jnp.float32) * dy)

    return jax.grad(loss, argnums=(0, 1, 2, 3, 4))(x, h, h_bias, scale, bias)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("masked", [True, False])
def test_residual_layer_norm_has_autodiffs_gradients_by_the_kernel(monkeypatch, masked, dtype):
    """Where the kernel does not apply (this CPU), `residual_layer_norm` is the composition it stands for, the same
    operations (the programs of every other device are those of before it). Where it applies (patched in,
    interpreted), its gradients are autodiff's of that composition: to float32 rounding, and in bfloat16 to a step of
    bfloat16 (the kernel rounds once what autodiff rounds twice)."""
    x, dy, scale = _inputs((2, 16, 96), dtype)
    h = jnp.asarray(np.random.default_rng(5).standard_normal((32, 96)), dtype)
    h_bias, bias = jnp.linspace(-0.5, 0.5, 96, dtype=dtype), jnp.linspace(-1.0, 1.0, 96)
    keep = _keep(x.shape) if masked else None
    args = (x, h, h_bias, keep, dy, scale, bias)
    want = jax.jit(lambda *a: _residual_grads(*a, composed=True))(*args)
    assert str(jax.make_jaxpr(lambda *a: _residual_grads(*a, composed=False))(*args)) == str(
        jax.make_jaxpr(lambda *a: _residual_grads(*a, composed=True))(*args)
    )
    calls = []

    def residual_backward(x, branch, keep, dy, scale, epsilon, keep_scale):
        calls.append((x.shape, branch.shape, keep is not None, keep_scale))
        return _residual_interpreted(x, branch, keep, dy, scale, epsilon, keep_scale)

    monkeypatch.setattr(layer_norm_kernel, "applies", lambda device, shape: True)
    monkeypatch.setattr(layer_norm_kernel, "residual_backward", residual_backward)
    by_kernel = jax.jit(lambda *a: _residual_grads(*a, composed=False))(*args)
    # the bfloat16 product of the branch and the keep scale, as `dropout.dropped` multiplies
    assert calls == [((2, 16, 96), (2, 16, 96), masked, float(np.asarray(dropout.keep_scale(0.1), dtype)))]
    for a, b in zip(by_kernel, want, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        if dtype == jnp.float32:
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
        else:
            a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
            np.testing.assert_allclose(a, b, rtol=2**-6, atol=2**-6 * np.abs(b).max())


def test_a_branch_in_another_dtype_than_x_is_differentiated_automatically(monkeypatch):
    """The kernel rounds what it adds up in x's dtype; a branch in another (float32 into a bfloat16 x, which the
    forward pass adds in float32) takes the composition's own gradients, not the kernel's."""
    x, dy, scale = _inputs((2, 16, 96), jnp.bfloat16)
    h, h_bias = jnp.ones((32, 96), jnp.float32), jnp.zeros(96, jnp.float32)
    calls = []
    monkeypatch.setattr(layer_norm_kernel, "applies", lambda device, shape: True)
    monkeypatch.setattr(layer_norm_kernel, "residual_backward", lambda *a: calls.append(a))
    monkeypatch.setattr(layer_norm_kernel, "backward", _interpreted)  # the composition's LayerNorm: the plain kernel
    args = (x, h, h_bias, _keep(x.shape), dy, scale, jnp.zeros(96))
    got = jax.jit(lambda *a: _residual_grads(*a, composed=False))(*args)
    want = jax.jit(lambda *a: _residual_grads(*a, composed=True))(*args)
    assert calls == []
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def _fit_on_a_mesh(monkeypatch, kernel: bool):
    """One epoch of a tiny classifier data-parallel over 4 x 2 devices, its LayerNorms' backward passes by the kernel
    (interpreted) or by XLA; its history, params and the shapes the kernel saw (with the mesh's size): the plain
    LayerNorm's (the embeddings') and the layers' residual ones."""
    seen = []

    def backward(x, dy, scale, epsilon):
        seen.append(("plain", jax.sharding.get_abstract_mesh().size, tuple(x.shape)))
        return _interpreted(x, dy, scale, epsilon)

    def residual_backward(x, branch, keep, dy, scale, epsilon, keep_scale):
        seen.append(("residual", jax.sharding.get_abstract_mesh().size, tuple(x.shape)))
        return _residual_interpreted(x, branch, keep, dy, scale, epsilon, keep_scale)

    if not kernel:
        return (*fit_on_a_mesh(), seen)
    monkeypatch.setattr(layer_norm_kernel, "residual_backward", residual_backward)
    return (*fit_through_kernel(monkeypatch, layer_norm_kernel, "backward", backward), seen)


def test_a_fit_on_a_mesh_with_the_kernel_trains_as_with_xlas_backward_pass(monkeypatch):
    """The whole path on a multi-device mesh: every LayerNorm's backward pass (the embeddings', each layer's two
    residual ones, the last layer's at [CLS] alone) runs the kernel in its shard_map on the global batch, each device
    its own rows; the fit's loss and params are those of the fit whose LayerNorm gradients XLA computed."""
    with monkeypatch.context() as patched:
        by_kernel = _fit_on_a_mesh(patched, kernel=True)
    by_xla = _fit_on_a_mesh(monkeypatch, kernel=False)
    assert sorted(set(by_kernel[2])) == [("plain", 8, (8, 12, 32)), ("residual", 8, (8, 1, 32)),
                                         ("residual", 8, (8, 12, 32))]  # fmt: skip
    assert by_xla[2] == []
    np.testing.assert_allclose(by_kernel[0]["loss"], by_xla[0]["loss"], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(by_kernel[1]), jax.tree.leaves(by_xla[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
