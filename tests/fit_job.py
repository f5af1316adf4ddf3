"""A tiny fine-tuning job for the resume tests: `python tests/fit_job.py CHECKPOINT_DIR OUTPUT.npz`.

It trains a small BERT classifier on fixed random data with checkpoints every 10 steps, then saves its params.
"""

import sys

import jax
import numpy as np

import flaxbert


def main(checkpoint_dir: str, output: str) -> None:
    rng = np.random.default_rng(0)
    n, length = 320, 16
    mask = (np.arange(length)[None] < rng.integers(4, length + 1, n)[:, None]).astype(np.int32)
    x = {"token_ids": rng.integers(1, 200, (n, length)) * mask, "segment_ids": np.zeros((n, length), int),
         "padding_mask": mask}  # fmt: skip
    y = rng.integers(0, 3, n)
    backbone = flaxbert.BertBackbone(200, 2, 2, 32, 64, max_sequence_length=16, seed=1)
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=3, seed=2)
    classifier.fit(x, y, batch_size=8, epochs=3, seed=7, verbose=0, checkpoint_dir=checkpoint_dir,
                   checkpoint_every=10)  # fmt: skip
    flat = jax.tree_util.tree_flatten_with_path(classifier.params)[0]
    np.savez(output, **{jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat})


if __name__ == "__main__":
    main(*sys.argv[1:])
