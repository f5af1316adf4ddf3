"""First load (download cache -> keras .weights.h5 -> native conversion) vs cached load of a bert_base-sized preset.

    python benchmarks/preset_load.py [--workdir DIR]

keras-hub (TensorFlow-free install, see .ci/run) writes a randomly initialised `bert_base_en_uncased`-shaped
BertTextClassifier preset into a local Hugging Face cache that stands in for the Hub (`hf://keras/...`); each load
then runs in a fresh process so that its wall time and peak host memory (ru_maxrss) are its own.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REVISION = "0" * 40
NAME = "bert_base_en_uncased"


def _make_hub(workdir: pathlib.Path) -> None:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras_hub

    backbone = keras_hub.models.BertBackbone(vocabulary_size=30522, num_layers=12, num_heads=12, hidden_dim=768,
                                             intermediate_dim=3072)  # fmt: skip
    classifier = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)
    repo = workdir / "hub" / f"models--keras--{NAME}"
    classifier.save_to_preset(str(repo / "snapshots" / REVISION))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)


def _load() -> None:
    """Child process: one from_preset, then report wall time and peak resident memory."""
    began = time.perf_counter()
    import flaxbert

    classifier = flaxbert.TextClassifier.from_preset(NAME, preprocessor=None)
    classifier.backbone.params["pooled_dense"]["kernel"].block_until_ready()
    seconds = time.perf_counter() - began
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_host_mib": peak_mib, "params": classifier.count_params()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=pathlib.Path, default=None,
                        help="a new or empty directory for the fake Hub cache and the conversions, kept afterwards "
                             "(default: a temporary one, removed)")  # fmt: skip
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _load()
    if args.workdir is not None and args.workdir.exists() and any(args.workdir.iterdir()):
        # its converted/ cache would make the first load a cached one
        parser.error(f"--workdir {args.workdir} is not empty: pass a new or empty directory")
    workdir = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="flaxbert-preset-load-"))
    _make_hub(workdir)
    env = dict(os.environ, HF_HUB_CACHE=str(workdir / "hub"), HF_HUB_OFFLINE="1",
               FLAXBERT_CACHE=str(workdir / "converted"), JAX_PLATFORMS="cpu")  # fmt: skip
    rows = {}
    for label in ("first load (h5 -> native)", "cached load (native)"):
        out = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True, check=True)
        rows[label] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"| {NAME}-sized BertTextClassifier ({rows[label]['params']:,} params) | seconds | peak host MiB |")
    print("|---|---:|---:|")
    for label, row in rows.items():
        print(f"| {label} | {row['seconds']:.1f} | {row['peak_host_mib']:,.0f} |")
    if args.workdir is None:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
