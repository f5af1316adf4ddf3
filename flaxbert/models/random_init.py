"""Random params drawn on the host with numpy, so that building a model compiles nothing.

Under `jax.jit`, a model's `init` is one program with a threefry draw and an erf-inverse per parameter: BERT-base's
took 3.6 s to compile on a 2-core CPU before running for 1.5 s, and the head of a classifier built on a loaded
encoder compiled the whole model's init for its two arrays (XLA dropped the rest). Here each parameter is drawn from
its own numpy stream, keyed by the seed and the parameter's path, so its values depend on neither the mesh, the
process, nor the other parameters. The distributions are the modules' initializers (`layers.dense`, `layers.embed`,
`layers.layer_norm`): kernels and embeddings truncated normal with stddev 0.02 cut at two stddevs (keras-hub's
`TruncatedNormal(stddev=0.02)`), biases zeros, LayerNorm scales ones, LoRA adapters Keras' He-uniform and zeros;
`tests/test_random_init.py` holds them to flax's `model.init` leaf by leaf. A seed gives the same values under the
same numpy version (numpy keeps the right to change a Generator's algorithms between versions, NEP 19), not those of
flax's `model.init` for that seed.
"""

from __future__ import annotations

import concurrent.futures
import os
import zlib

import flax.linen as nn
import jax
import numpy as np

from flaxbert.models import lora
from flaxbert.models.layers import INIT_STDDEV

_CUT = 2.0  # in stddevs, as `jax.nn.initializers.truncated_normal`


def check_seed(seed) -> None:
    """A model's init seed is any integer (as a jax key's): a float, string or None is refused where it is given."""
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool | np.bool_):
        raise ValueError(f"seed must be an integer, got {seed!r}.")


def random_params(abstract, seed: int, path: tuple[str, ...] = ()) -> dict:
    """`abstract` (the boxed or plain shapes of `abstract_params`) as float32 numpy arrays, drawn from `seed`.

    `path`: where `abstract` sits in a larger tree, whose leaves it draws bit for bit (a part drawn alone equals the
    same part of the whole: a checkpoint's missing pooler gets the one a random backbone has).
    """
    leaves, tree = jax.tree_util.tree_flatten_with_path(nn.unbox(abstract))
    jobs = [((*path, *(str(getattr(k, "key", k)) for k in key_path)), tuple(leaf.shape)) for key_path, leaf in leaves]
    # numpy fills arrays without the GIL: the parameters are drawn on every core at once (each from its own stream,
    # so the values do not depend on the order)
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        drawn = list(pool.map(lambda job: _draw(*job, seed), jobs))
    return jax.tree_util.tree_unflatten(tree, drawn)


def _draw(names: tuple[str, ...], shape: tuple[int, ...], seed: int) -> np.ndarray:
    kind = names[-1]
    if kind in ("bias", "lora_kernel_b"):
        return np.zeros(shape, np.float32)
    if kind == "scale":
        return np.ones(shape, np.float32)
    if kind not in ("kernel", "embedding", "lora_kernel_a"):
        raise ValueError(f"no random init is defined for the parameter {'/'.join(names)}.")
    # numpy takes non-negative entropy only; jax keys take any int, and so do flaxbert's seeds
    rng = np.random.default_rng([int(seed) % 2**64, zlib.crc32("/".join(names).encode())])
    if kind == "lora_kernel_a":  # Keras' He-uniform
        limit = np.float32(lora.he_uniform_limit(shape))
        return rng.uniform(-limit, limit, shape).astype(np.float32)
    values = rng.standard_normal(shape, dtype=np.float32).reshape(-1)
    outside = np.flatnonzero((values > _CUT) | (values < -_CUT))  # no float temporary: 10x faster than abs()
    while outside.size:  # redrawn until inside the cut (4.6% at first): the normal distribution truncated there
        redrawn = rng.standard_normal(outside.size, dtype=np.float32)
        values[outside] = redrawn
        outside = outside[(redrawn > _CUT) | (redrawn < -_CUT)]
    values *= np.float32(INIT_STDDEV)
    return values.reshape(shape)
