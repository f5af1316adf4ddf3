import json
import os
import subprocess
import sys
import textwrap
import warnings

import jax
import pytest

import flaxbert
from flaxbert import host_memory

glibc = pytest.mark.skipif(host_memory._glibc() is None, reason="reuse_host_memory acts on glibc's malloc only")

# A fresh process: the settings must precede jax's backend. Fits a small classifier whose train step needs a large
# temporary buffer, then counts the minor page faults of further steps.
_CHILD = textwrap.dedent(
    """
    import json, os, resource, sys
    import flaxbert
    applied = flaxbert.reuse_host_memory() if sys.argv[1] == "reuse" else False
    import jax, numpy as np, optax
    backbone = flaxbert.BertBackbone(30522, 2, 2, 128, 512, max_sequence_length=128)
    classifier = flaxbert.BertTextClassifier(backbone, 2)
    classifier.compile(optimizer=optax.adamw(1e-4))
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, 30522, (96, 128), dtype=np.int32), "padding_mask": np.ones((96, 128), bool),
         "segment_ids": np.zeros((96, 128), np.int32)}
    y = rng.integers(0, 2, 96)
    classifier.fit(x, y, batch_size=32, epochs=1, verbose=0)
    (train_fn, create_state), _, _ = classifier._steps("train", True)
    from flaxbert.training import loops, programs
    state, sums = create_state(classifier.params), programs.zero_totals(classifier.mesh)
    batch = {"inputs": {k: v[:32] for k, v in x.items()}, "label": y[:32], "weight": np.ones(32, np.float32),
             "mask": np.ones(32, np.float32)}
    seed = programs.seed_array(0, classifier.mesh)
    temp = train_fn.lower(state, sums, batch, seed).compile().memory_analysis().temp_size_in_bytes
    def faults(epochs):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        classifier.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults(3), faults(3)  # the heap grows to its working size over the first fits
    # The marginal step (what each fit pays once cancels out); the lowest of five estimates, since the heap may
    # still grow now and then when the two threads interleave their allocations differently.
    per_step = min((faults(3) - faults(1)) / 6 for _ in range(5))
    pages = temp / os.sysconf("SC_PAGE_SIZE")
    print(json.dumps({"applied": applied, "faults_per_step": per_step, "temp_pages": pages}))
    """
)


def _child(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a CPU job has
    done = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc
def test_fit_steps_reuse_their_temporary_buffer_pages():
    """With the setting on, the train step's temporary buffer (bert_tiny's shape: 167 MB, beyond the 64 MB that glibc's
    thread arenas can hold, so by default each step maps it afresh and faults in all its pages) is reused."""
    reused = _child("reuse")
    assert reused["applied"] is True
    assert reused["temp_pages"] > 16_384, "the step's temporary buffer must exceed glibc's 64 MB arena heaps"
    # Without the setting a step faults in all of the buffer's pages (41,361 faults for 40,736 pages, measured).
    assert reused["faults_per_step"] < 0.02 * reused["temp_pages"], reused


@glibc
def test_reuse_host_memory_after_jax_started_warns_and_changes_nothing(monkeypatch):
    jax.numpy.zeros(1).block_until_ready()  # jax's backend is up in this process
    monkeypatch.setattr(host_memory, "_applied", False)
    calls = []
    monkeypatch.setattr(host_memory, "_glibc", lambda: type("libc", (), {"mallopt": lambda *a: calls.append(a)}))
    with pytest.warns(UserWarning, match="before the first jax computation"):
        assert flaxbert.reuse_host_memory() is False
    assert calls == []


def test_reuse_host_memory_is_a_no_op_without_glibc(monkeypatch):
    monkeypatch.setattr(host_memory, "_glibc", lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert flaxbert.reuse_host_memory() is False


def test_accelerator_installed_follows_jax_plugins(monkeypatch):
    monkeypatch.setattr(host_memory.importlib.metadata, "entry_points", lambda group: [])
    monkeypatch.setattr(host_memory.importlib.util, "find_spec", lambda name: None)
    assert host_memory.accelerator_installed() is False
    monkeypatch.setattr(host_memory.importlib.util, "find_spec", lambda name: object() if name == "libtpu" else None)
    assert host_memory.accelerator_installed() is True


def test_a_jax_without_the_private_backend_check_still_gets_the_settings(monkeypatch):
    """`_jax_backend_started` reads a private jax function; a jax that moved it must not break the call."""
    from jax._src import xla_bridge

    monkeypatch.delattr(xla_bridge, "backends_are_initialized")
    assert host_memory._jax_backend_started() is False
