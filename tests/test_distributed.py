"""Two processes on this machine (CPU, localhost coordinator) train to the same params as one process, and save them
together as one preset (and LoRA adapters as one .lora.h5 file)."""

import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

JOB = pathlib.Path(__file__).with_name("distributed_job.py")


def _env(**extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(JOB.parents[1]), **extra)
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_fit_equals_one_process(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(JOB), str(tmp_path / f"p{i}.npz"), str(tmp_path / "two_preset")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_env(JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)),
        )  # fmt: skip
        for i in range(2)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode()[-3000:]
    single = subprocess.run([sys.executable, str(JOB), str(tmp_path / "single.npz")], env=_env(), capture_output=True,
                            timeout=300)  # fmt: skip
    assert single.returncode == 0, single.stdout.decode()[-3000:] + single.stderr.decode()[-3000:]
    two, one = np.load(tmp_path / "p0.npz"), np.load(tmp_path / "single.npz")
    assert int(two["devices"]) == 2 and int(one["devices"]) == 1
    for key in (k for k in one.files if k != "devices"):
        np.testing.assert_allclose(two[key], one[key], atol=1e-6, err_msg=key)
    # The preset both processes saved (each its own shards; process 0 the rest): this process reloads the same params.
    # Before each process staged into a directory of its own and the save waited forever for the other.
    import jax

    import flaxbert

    reloaded = flaxbert.TextClassifier.from_preset(tmp_path / "two_preset")
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(reloaded.params))[0]
    assert {jax.tree_util.keystr(path) for path, _ in flat} == {k for k in two.files if k not in ("devices", "logits")}
    for path, leaf in flat:
        np.testing.assert_array_equal(leaf, two[jax.tree_util.keystr(path)])
    assert not [p.name for p in tmp_path.iterdir() if ".partial" in p.name]  # no staging directory left behind
    # The transformers export: one writer (each process used to write and rename its own copy into the same place).
    from safetensors.numpy import load_file

    exported = load_file(tmp_path / "two_preset_hf" / "model.safetensors")
    np.testing.assert_array_equal(exported["classifier.weight"], two["['logits']['kernel']"].T)
    np.testing.assert_array_equal(exported["bert.embeddings.word_embeddings.weight"],
                                  two["['backbone']['token_embedding']['embedding']"])  # fmt: skip
    # The LoRA adapters the processes trained equal one process's, and the file they wrote together holds them whole.
    two_lora, one_lora = np.load(tmp_path / "p0_lora.npz"), np.load(tmp_path / "single_lora.npz")
    assert sorted(two_lora.files) == sorted(one_lora.files) and len(one_lora.files) == 4  # query, value: a and b
    for key in one_lora.files:
        np.testing.assert_allclose(two_lora[key], one_lora[key], atol=1e-6, err_msg=key)
    assert np.abs(one_lora["['transformer_layer_0']['self_attention']['query']['lora_kernel_b']"]).max() > 1e-4
    backbone = flaxbert.BertBackbone.from_config(reloaded.backbone.config, reloaded.backbone.params)
    backbone.load_lora_weights(tmp_path / "two_preset_adapters.lora.h5")
    assert backbone.config.lora_rank == 2 and backbone.config.lora_targets == ("query", "value")
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(backbone.params))[0]
    loaded = {jax.tree_util.keystr(path): leaf for path, leaf in flat if "lora_kernel" in str(path)}
    assert sorted(loaded) == sorted(two_lora.files)
    for key, leaf in loaded.items():
        np.testing.assert_array_equal(leaf, two_lora[key], err_msg=key)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
