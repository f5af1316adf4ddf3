"""A tiny fit run as one process of a `jax.distributed` job (or alone): `python tests/distributed_job.py OUTPUT.npz
[PRESET_DIR]` (with PRESET_DIR, the fitted classifier saved there as a native preset, and beside it, in
PRESET_DIR_hf, as a transformers checkpoint, by every process together; the fit then checkpoints in
PRESET_DIR_ckpt and is restored from it). Then LoRA adapters are trained: OUTPUT_lora.npz holds them, and with
PRESET_DIR, PRESET_DIR_adapters.lora.h5 too.

The coordinator comes from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID when set.
"""

import sys
import warnings

from flaxbert.parallel import initialize_distributed

initialize_distributed()  # before any other jax call

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import flaxbert  # noqa: E402


def main(output: str, preset_dir: str | None = None) -> None:
    rng = np.random.default_rng(0)
    n, length = 36, 12
    mask = (np.arange(length)[None] < rng.integers(3, length + 1, n)[:, None]).astype(np.int32)
    x = {"token_ids": rng.integers(1, 100, (n, length)) * mask, "segment_ids": np.zeros((n, length), int),
         "padding_mask": mask}  # fmt: skip
    y = rng.integers(0, 2, n)
    classifier = flaxbert.BertTextClassifier(flaxbert.BertBackbone(100, 1, 2, 16, 32, max_sequence_length=12),
                                             num_classes=2)  # fmt: skip
    # With a preset to write (the two-process run), the fit checkpoints into one directory shared by the processes,
    # and a second fit restores its last checkpoint: the state's digests are computed and checked across processes.
    ckpt = None if preset_dir is None else preset_dir + "_ckpt"
    classifier.fit(x, y, batch_size=8, epochs=2, verbose=0, checkpoint_dir=ckpt, seed=0)
    if ckpt is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            classifier.fit(x, y, batch_size=8, epochs=2, verbose=0, checkpoint_dir=ckpt, seed=0)
        assert any("already trained" in str(w.message) for w in caught), [str(w.message) for w in caught]
    logits = classifier.predict(x, batch_size=8, verbose=0)
    if jax.process_count() > 1:  # a mesh whose devices are not in the processes' order: rows came back swapped
        order = np.array(jax.devices()[::-1]).reshape(-1, 1)
        classifier.compile(mesh=jax.sharding.Mesh(order, ("data", "fsdp")))
        np.testing.assert_allclose(classifier.predict(x, batch_size=8, verbose=0), logits, atol=1e-6)
    if preset_dir is not None:
        classifier.save_to_preset(preset_dir)
        classifier.export_to_transformers(preset_dir + "_hf")
    if jax.process_index() == 0:
        flat = jax.tree_util.tree_flatten_with_path(jax.device_get(classifier.params))[0]
        arrays = {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}
        np.savez(output, logits=logits, devices=jax.device_count(), **arrays)
    # LoRA adapters trained over the processes (saved beside OUTPUT as OUTPUT_lora.npz by process 0), and with a
    # preset, gathered from all of them and written by process 0.
    classifier.backbone.enable_lora(2)
    classifier.compile(optimizer=optax.adam(1e-3))  # adapters that move well away from their zero start
    classifier.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    if jax.process_index() == 0:
        flat = jax.tree_util.tree_flatten_with_path(jax.device_get(classifier.backbone.params))[0]
        adapters = {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat if "lora_kernel" in str(path)}
        np.savez(output.removesuffix(".npz") + "_lora.npz", **adapters)
    if preset_dir is not None:
        classifier.backbone.save_lora_weights(preset_dir + "_adapters.lora.h5")


if __name__ == "__main__":
    main(*sys.argv[1:])
