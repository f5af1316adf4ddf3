"""Cold time to first step in fresh processes: build the random classifier, then fit one batch, no compile cache.

Each process imports flaxbert from a checkout (this one, and with `--against` another, e.g. a `git worktree` of an
earlier commit), builds `benchmarks/peers.py`'s classifier and fits one batch; pairs of processes alternate between
the checkouts, so a burst of load hits both alike. Prints build, first fit and their sum per process, and the
seconds jax spent in that time tracing, lowering and compiling its programs, summed over them (`compile_log.py`).
`--trace-only` times the train step's trace and lowering alone instead, on the main thread: in a fit they run in a
background thread beside the loop's own work, and their times there swing with the contention for the GIL.

    python benchmarks/first_step.py --shape bert_tiny:32:float32 --pairs 3
    python benchmarks/first_step.py --shape bert_base:8:bfloat16 --trace-only --against /tmp/before --pairs 5
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


def child(root: str, shape_text: str, mode: str) -> None:
    sys.path[:0] = [root, f"{root}/benchmarks"]
    import compile_log
    import jax
    import peers

    import flaxbert

    if not flaxbert.__file__.startswith(root):
        raise RuntimeError(f"flaxbert came from {flaxbert.__file__}, not {root}")
    events = compile_log.start()
    shape = peers.Shape.parse(shape_text)
    x, y = peers.random_inputs(shape.model, shape.batch, 128)
    began = time.perf_counter()
    classifier = peers.flaxbert_classifier(shape.model, shape.precision)
    jax.block_until_ready(classifier.params)
    built = time.perf_counter()
    if mode == "trace":  # the train step alone, traced and lowered here on the main thread, without compiling it
        train_fn, *args = peers.flaxbert_train_step(classifier, x, y)
        specs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), args)
        tracing = time.perf_counter()
        traced = train_fn.trace(*specs)
        lowering = time.perf_counter()
        traced.lower()
        lowered = time.perf_counter()
        eqns = sum(1 for _ in _equations(traced.jaxpr.jaxpr))
        print(json.dumps({"trace_s": lowering - tracing, "lower_s": lowered - lowering, "equations": eqns}))
        return
    classifier.fit(x, y, batch_size=shape.batch, verbose=0)  # returns after a device_get of its metrics
    fitted = time.perf_counter()
    phases = {f"{phase}_s": compile_log.seconds(events, phase) for phase in ("trace", "lower", "compile")}
    print(json.dumps({"build_s": built - began, "fit_s": fitted - built, "first_step_s": fitted - began, **phases}))


def _equations(jaxpr):
    """Every equation of `jaxpr`, those of its sub-jaxprs (jitted calls, custom derivatives, loops) included."""
    import jax.extend

    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _equations(sub)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="bert_tiny:32:float32", help="model:batch:precision (benchmarks/peers.py)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--against", default=None, help="another checkout to alternate with")
    parser.add_argument(
        "--trace-only",
        action="store_true",
        help="time only the train step's trace and lowering, on the main thread, compiling nothing",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    roots = [str(HERE.parent)] + ([str(pathlib.Path(args.against).resolve())] if args.against else [])
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}  # cold: no persistent cache
    mode = "trace" if args.trace_only else "fit"
    print(f"{args.shape}, {args.pairs} rounds of fresh processes, no compile cache\n")
    if args.trace_only:
        print("| checkout | train step trace s | lower s | jaxpr equations |\n|---|---:|---:|---:|")
    else:
        print("| checkout | build s | first fit s | first step s | trace s | lower s | XLA compile s |")
        print("|---|---:|---:|---:|---:|---:|---:|")
    for _ in range(args.pairs):
        for root in roots[::-1]:  # the other checkout first in each round
            out = subprocess.run([sys.executable, __file__, "--child", root, args.shape, mode], capture_output=True,
                                 text=True, check=True, env=env).stdout  # fmt: skip
            r = json.loads(out.strip().splitlines()[-1])
            if args.trace_only:
                print(f"| {root} | {r['trace_s']:.3f} | {r['lower_s']:.3f} | {r['equations']} |", flush=True)
            else:
                print(f"| {root} | {r['build_s']:.2f} | {r['fit_s']:.2f} | {r['first_step_s']:.2f} | "
                      f"{r['trace_s']:.2f} | {r['lower_s']:.2f} | {r['compile_s']:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
