"""Warm time to first step against the persistent cache's threshold: which programs a second process still compiles.

Fills one compile cache per threshold (`enable_compilation_cache(min_compile_time_s=...)`: jax's default 1.0 s, and
flaxbert's 0.0, every program), then starts fresh processes in interleaved pairs, each building a classifier and
fitting one batch with its cache warm, and prints what each took: the build, the first fit, and XLA's compile-or-load
time and the tracing and lowering to StableHLO (which a cache hit still pays: the lowered program is the cache key)
summed over the process (`jax_log_compiles`). A program under the threshold was not written, so it compiles again
in every process.

    python benchmarks/warm_start.py                      # bert_base, batch 2, 3 pairs (CPU: ~3 minutes)
    python benchmarks/warm_start.py --shape bert_tiny:8:float32 --pairs 2
    python3 benchmarks/warm_start.py --shape bert_base:32:bfloat16 --cache /tmp/jaxcache --pairs 2  # a warm cache
    git worktree add /tmp/before HEAD~1 && python benchmarks/warm_start.py --shape bert_base:8:bfloat16 \
        --cache /tmp/wc --against /tmp/before --pairs 3   # each round: a process of each checkout, the other first

With `--against`, each process imports flaxbert (and these benchmarks) from one of the two checkouts, alternating
so that a burst of load hits both alike; the programs must be the same for the cache to serve both.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent

THRESHOLDS = (1.0, 0.0)  # jax's default, flaxbert's


def child(root: str, cache: str, threshold: float, shape_text: str) -> None:
    """One process: flaxbert imported from the checkout `root`, the classifier built and fitted on one batch with
    `cache` at `threshold`; prints one JSON line."""
    sys.path[:0] = [root, f"{root}/benchmarks"]
    import compile_log
    import peers

    import flaxbert

    if not flaxbert.__file__.startswith(root):
        raise RuntimeError(f"flaxbert came from {flaxbert.__file__}, not {root}")

    flaxbert.enable_compilation_cache(cache, min_compile_time_s=threshold)
    events = compile_log.start()
    shape = peers.Shape.parse(shape_text)
    x, y = peers.random_inputs(shape.model, shape.batch, 128)
    began = time.perf_counter()
    classifier = peers.flaxbert_classifier(shape.model, shape.precision)
    built = time.perf_counter()
    classifier.fit(x, y, batch_size=shape.batch, verbose=0)
    fitted = time.perf_counter()
    print(json.dumps({"build_s": built - began, "fit_s": fitted - built, "first_step_s": fitted - began,
                      "xla_compile_or_load_s": compile_log.seconds(events, "compile"),
                      "trace_lower_s": compile_log.seconds(events, "trace") + compile_log.seconds(events, "lower"),
                      "programs": compile_log.count(events, "compile")}))  # fmt: skip


def run(cache: str, threshold: float, shape: str, root: str = str(HERE.parent)) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", root, cache, str(threshold), shape],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="bert_base:2:float32", help="model:batch:precision (benchmarks/peers.py)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--cache", default=None, help="time fresh processes on this already warm cache instead")
    parser.add_argument("--against", default=None, help="another checkout to alternate with (needs --cache)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], float(args.child[2]), args.child[3])
        return
    if args.against and not args.cache:
        parser.error("--against times both checkouts on one warm cache: pass --cache DIR (filled by either)")
    if args.cache:  # an existing cache, warmed by earlier runs (on a GPU: benchmarks/gpu_session.sh's)
        if not pathlib.Path(args.cache).is_dir() or not any(pathlib.Path(args.cache).iterdir()):
            parser.error(f"--cache {args.cache} is missing or empty: it must be a cache that earlier runs of the shape "
                         "filled (throughput.py --compilation-cache DIR, or this script without --cache)")  # fmt: skip
        roots = [str(HERE.parent)] + ([str(pathlib.Path(args.against).resolve())] if args.against else [])
        _table(args.shape, {0.0: args.cache}, args.pairs, f"the warm cache {args.cache}, {args.pairs} fresh processes",
               roots)  # fmt: skip
        return
    with tempfile.TemporaryDirectory() as root:
        caches = {t: f"{root}/min{t:g}" for t in THRESHOLDS}
        for threshold, cache in caches.items():
            run(cache, threshold, args.shape)  # fills the cache
        _table(args.shape, caches, args.pairs, f"warm cache, {args.pairs} interleaved pairs of fresh processes")


def _table(shape: str, caches: dict, rounds: int, title: str, roots=(str(HERE.parent),)) -> None:
    print(f"{shape}, {title}\n")
    print(
        "| checkout | min_compile_time_s | build s | first fit s | first step s | XLA compile-or-load s | "
        "trace + lower s | programs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for _ in range(rounds):
        for root in roots[::-1]:  # the other checkout first in each round
            for threshold, cache in caches.items():
                r = run(cache, threshold, shape, root)
                print(f"| {root} | {threshold:g} | {r['build_s']:.2f} | {r['fit_s']:.2f} | {r['first_step_s']:.2f} | "
                      f"{r['xla_compile_or_load_s']:.2f} | {r['trace_lower_s']:.2f} | {r['programs']} |",
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
