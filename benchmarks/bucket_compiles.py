"""The compiles of a bucketed fit and evaluate from raw text: compiled ahead in background threads (flaxbert's way) vs
compiled where the loop meets each batch length (its own thread, one program after another).

    python benchmarks/bucket_compiles.py                                   # bert_tiny, batch 32, 2 pairs
    python benchmarks/bucket_compiles.py --shape bert_base:32:bfloat16 --steps 60 --pairs 1    # a GPU

Each arm runs in a fresh process with no persistent compile cache, the arms alternating, so every batch length the
run meets is a program to compile. One run: a classifier of `--shape` (random init, Keras' AdamW) with a word-level
tokenizer of SST-2's training sentences (sequence_length 128) fits `--steps` batches of them (shuffled, bucketed: the
batches meet 5-7 lengths), then evaluates the 872 dev sentences (bucketed, longest first: one more program per
length). The "in the loop" arm replaces `compile_ahead.compile_ahead` with a function that starts nothing, so the
loops' jitted calls compile as they did before programs were compiled ahead. Prints each process's fit, evaluate and
total seconds, the train programs it compiled, and the seconds of a second fit over the same batches with every
program compiled: the steps alone, which would show kernels autotuned beside other GPU work coming out slower.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
ARMS = ("ahead", "in the loop")


def sentences(path: pathlib.Path, limit: int | None = None) -> tuple[list[str], list[int]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:limit]
    return [row["sentence"] for row in rows], [int(row["label"]) for row in rows]


def child(arm: str, shape_text: str, steps: int, data: pathlib.Path) -> None:
    sys.path[:0] = [str(REPO), str(HERE), str(REPO / "tests")]
    import compile_log
    import jax
    import peers
    import tiny_preset

    import flaxbert
    from flaxbert.training import compile_ahead

    if arm == "in the loop":
        compile_ahead.compile_ahead = lambda jitted, args_by_key: {}
    shape = peers.Shape.parse(shape_text)
    vocabulary = tiny_preset.sst2_vocabulary(data / "train.tsv", rows=20_000, size=8_000)
    classifier = peers.flaxbert_classifier(shape.model, shape.precision)
    tokenizer = flaxbert.BertTokenizer(vocabulary, lowercase=True)
    classifier.preprocessor = flaxbert.BertTextClassifierPreprocessor(tokenizer, sequence_length=128)
    x, y = sentences(data / "train.tsv", steps * shape.batch)
    dev_x, dev_y = sentences(data / "dev.tsv")
    events = compile_log.start()
    began = time.perf_counter()
    classifier.fit(x, y, batch_size=shape.batch, verbose=0)
    fitted = time.perf_counter()
    scores = classifier.evaluate(dev_x, dev_y, batch_size=shape.batch, verbose=0)
    done = time.perf_counter()
    classifier.fit(x, y, batch_size=shape.batch, verbose=0)  # every program compiled: the steps alone
    refit = time.perf_counter() - done
    print(json.dumps({"fit_s": fitted - began, "evaluate_s": done - fitted, "total_s": done - began, "refit_s": refit,
                      "train_programs": compile_log.count(events, "start", "train_step_summed"),
                      "in_loop_thread": sum(e.thread == "MainThread" for e in events
                                            if e.phase == "start" and e.program == "train_step_summed"),
                      "dev_accuracy": scores["accuracy"], "device": jax.devices()[0].device_kind}))  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="bert_tiny:32:float32", help="model:batch:precision (benchmarks/peers.py)")
    parser.add_argument("--steps", type=int, default=40, help="train batches")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--data", type=pathlib.Path, default=REPO.parent / "shared" / "data" / "sst2")
    parser.add_argument("--json", type=pathlib.Path, default=None)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.steps, args.data)
        return
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}  # every program compiles
    print(f"{args.shape}, {args.steps} SST-2 train batches + dev evaluate, bucketed, {args.pairs} pairs, no cache\n")
    print("| arm | fit s | evaluate s | total s | second fit s | train programs (in the loop's thread) |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = []
    for _ in range(args.pairs):
        for arm in ARMS[::-1]:
            command = [sys.executable, __file__, "--child", arm, args.shape, "--steps", str(args.steps),
                       "--data", str(args.data)]  # fmt: skip
            out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
            if out.returncode:
                sys.exit(f"{arm} failed:\n{out.stderr[-3000:]}")
            row = dict(json.loads(out.stdout.strip().splitlines()[-1]), arm=arm)
            rows.append(row)
            times = " | ".join(f"{row[key]:.2f}" for key in ("fit_s", "evaluate_s", "total_s", "refit_s"))
            print(f"| {arm} | {times} | {row['train_programs']} ({row['in_loop_thread']}) |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"shape": args.shape, "steps": args.steps, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
