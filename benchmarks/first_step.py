"""Cold time to first step in fresh processes: build the random classifier, then fit one batch, no compile cache.

Each process imports flaxbert from a checkout (this one, and with `--against` another, e.g. a `git worktree` of an
earlier commit), builds `benchmarks/peers.py`'s classifier and fits one batch; pairs of processes alternate between
the checkouts, so a burst of load hits both alike. Prints build, first fit and their sum per process.

    python benchmarks/first_step.py --shape bert_tiny:32:float32 --pairs 3
    git worktree add /tmp/before HEAD~1 && python benchmarks/first_step.py --against /tmp/before --pairs 3
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


def child(root: str, shape_text: str) -> None:
    sys.path[:0] = [root, f"{root}/benchmarks"]
    import jax
    import peers

    import flaxbert

    if not flaxbert.__file__.startswith(root):
        raise RuntimeError(f"flaxbert came from {flaxbert.__file__}, not {root}")
    shape = peers.Shape.parse(shape_text)
    x, y = peers.random_inputs(shape.model, shape.batch, 128)
    began = time.perf_counter()
    classifier = peers.flaxbert_classifier(shape.model, shape.precision)
    jax.block_until_ready(classifier.params)
    built = time.perf_counter()
    classifier.fit(x, y, batch_size=shape.batch, verbose=0)  # returns after a device_get of its metrics
    fitted = time.perf_counter()
    print(json.dumps({"build_s": built - began, "fit_s": fitted - built, "first_step_s": fitted - began}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="bert_tiny:32:float32", help="model:batch:precision (benchmarks/peers.py)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--against", default=None, help="another checkout to alternate with")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    roots = [str(HERE.parent)] + ([str(pathlib.Path(args.against).resolve())] if args.against else [])
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}  # cold: no persistent cache
    print(f"{args.shape}, {args.pairs} rounds of fresh processes, no compile cache\n")
    print("| checkout | build s | first fit s | first step s |\n|---|---:|---:|---:|")
    for _ in range(args.pairs):
        for root in roots[::-1]:  # the other checkout first in each round
            out = subprocess.run([sys.executable, __file__, "--child", root, args.shape], capture_output=True,
                                 text=True, check=True, env=env).stdout  # fmt: skip
            r = json.loads(out.strip().splitlines()[-1])
            print(f"| {root} | {r['build_s']:.2f} | {r['fit_s']:.2f} | {r['first_step_s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
