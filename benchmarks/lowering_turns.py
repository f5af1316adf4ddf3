"""Several train programs compiled ahead at once: when each one is lowered (ready for XLA) and when compiled.

A bucketed fit asks for one train program per batch length, and a fit with validation for its eval programs too;
`flaxbert/training/compile_ahead.py` compiles them in a pool of threads (up to 8 on an accelerator's host, one on a
CPU backend). Tracing and lowering are Python work, done by one thread at a time, while XLA's compile runs beside it.
This starts the train programs of `--lengths` together in a pool of `--threads` threads (set here, whatever the
backend) and prints, per process, the seconds from the start until each program was lowered and until each was
compiled, in the order asked. With `--against` another checkout (a `git worktree` of an earlier commit), fresh
processes alternate between the two, no persistent compile cache.

    python benchmarks/lowering_turns.py --shape bert_base:8:bfloat16 --threads 4 --lengths 32,48,64,128 \
        --against /tmp/before --pairs 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def child(root: str, shape_text: str, threads: int, lengths: list[int]) -> None:
    sys.path[:0] = [root, f"{root}/benchmarks"]
    from concurrent.futures import ThreadPoolExecutor

    import jax
    import peers

    import flaxbert
    from flaxbert.training import compile_ahead

    if not flaxbert.__file__.startswith(root):
        raise RuntimeError(f"flaxbert came from {flaxbert.__file__}, not {root}")
    shape = peers.Shape.parse(shape_text)
    classifier = peers.flaxbert_classifier(shape.model, shape.precision)
    specs = {}
    for length in lengths:
        x, y = peers.random_inputs(shape.model, shape.batch, length)
        train_fn, *args = peers.flaxbert_train_step(classifier, x, y)
        specs[length] = tuple(jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), args))
    lowered = []

    class Lowered(logging.Handler):  # jax logs this line as each program's lowering ends
        def emit(self, record):
            if record.getMessage().startswith("Finished jaxpr to MLIR module conversion jit(train_step_summed)"):
                lowered.append(time.perf_counter() - began)

    jax.config.update("jax_log_compiles", True)
    logger = logging.getLogger("jax")
    logger.addHandler(Lowered())
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    compile_ahead._pool = ThreadPoolExecutor(threads, thread_name_prefix="flaxbert-compile")
    began = time.perf_counter()
    futures = compile_ahead.compile_ahead(train_fn, specs)
    compiled = []
    for length in lengths:
        futures[length].result()
        compiled.append(time.perf_counter() - began)
    print(json.dumps({"lowered_s": lowered, "compiled_s": compiled}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="bert_base:8:bfloat16", help="model:batch:precision (benchmarks/peers.py)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--lengths", default="32,48,64,128", help="batch lengths: a program each")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--against", default=None, help="another checkout to alternate with")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, shape, threads, lengths = args.child
        child(root, shape, int(threads), [int(n) for n in lengths.split(",")])
        return
    roots = [str(HERE.parent)] + ([str(pathlib.Path(args.against).resolve())] if args.against else [])
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}  # cold: no persistent cache
    print(f"{args.shape}, train programs of lengths {args.lengths} started together in {args.threads} threads, "
          f"{args.pairs} rounds of fresh processes, no compile cache\n")  # fmt: skip
    print("| checkout | lowered at, s (in the order done) | compiled at, s (in the order asked) |\n|---|---|---|")
    for _ in range(args.pairs):
        for root in roots[::-1]:  # the other checkout first in each round
            command = [sys.executable, __file__, "--child", root, args.shape, str(args.threads), args.lengths]
            out = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
            r = json.loads(out.strip().splitlines()[-1])
            lowered, compiled = (" / ".join(f"{s:.2f}" for s in r[key]) for key in ("lowered_s", "compiled_s"))
            print(f"| {root} | {lowered} | {compiled} |", flush=True)


if __name__ == "__main__":
    main()
