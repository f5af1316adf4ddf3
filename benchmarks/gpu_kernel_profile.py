"""Where a GPU train step's time goes: the classifier's compiled train step, timed, then traced and summed per kernel.

Each variant is model:batch:precision:attention_kernel, with ":flat" for the optimizer under `optax.flatten` (its update
as one vector: a few kernels instead of a few per parameter, the same elementwise math), ":fit" for the public
`classifier.fit` over fresh batches instead of the bare step, ":scan" for the encoder with `scan_layers=True` (one layer
to compile, run as a loop), or ":autodiff" for the model with flax's LayerNorm and jax's GELU differentiated
automatically (flaxbert's before session 23; its own keep less for the backward pass), ":xla_masks" for the dropout
masks drawn by XLA's operations instead of the Pallas kernel (flaxbert's before session 32), ":model_casts" for the
params cast by the model in every forward pass instead of by the optimizer update (before session 33), ":xla_norms"
for the LayerNorms' backward passes by XLA's operations instead of the Pallas kernel (before session 33), or
":no_kernels" for XLA's operations wherever flaxbert would run a Pallas kernel (`$FLAXBERT_PALLAS_KERNELS=0`; the
other arms are in `peers.ARMS`). It runs the
same classifier and step as throughput.py's "jitted step" row (benchmarks/peers.py: random init, Keras' AdamW, dropout
0.1, seq 128): the step's wall time over 20 steps, then a 5-step `jax.profiler` trace (10 for a fit) summed per kernel
name, per kind of kernel (the name without its number), per part of the model (`hlo_parts.py`: the pass and module path
of each kernel's HLO instruction, read from the compiled program) and per host event. Kernel time against wall time says
whether the GPU is busy (compute- or memory-bound: the top kernels say which) or waits (on launches, or in a fit on the
host's loop: its host events say where).

    python3 benchmarks/gpu_kernel_profile.py --variants \
        bert_base:256:bfloat16:auto,bert_base:32:bfloat16:auto,bert_base:32:bfloat16:auto:flat --out $OUT/profile.txt
    python3 benchmarks/gpu_kernel_profile.py --variants bert_tiny:4:float32:xla,bert_tiny:4:float32:xla:flat,\
bert_tiny:4:float32:xla:fit --steps 2   # CPU smoke

Run it under `XLA_FLAGS=...` (in a fresh process, without --compilation-cache) to A/B XLA's GPU options: the header
names the flags, and each variant's first step is its cold compile (benchmarks/gpu_session.sh's step 5).

Session 2's output (the code of then, on an H100) is benchmarks/results/profile_step_gpu.txt.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import pathlib
import re
import tempfile
import time

import hlo_parts
import jax
import peers

SEQ = 128
TRACED_STEPS = 5
FIT_TRACED_STEPS = 10  # a traced fit carries fit's per-call costs too: more steps dilute them
TOP = 30
HOST_TOP = 15
_PROFILER_EVENTS = ("contextlib.py", "profiler.py")  # the trace's own start and stop, not the steps'


def train_runner(shape, attention_kernel, mode: str, most_steps: int):
    """`run(n)`: n <= most_steps train steps of the classifier, returning once they are done. mode "": its own jitted
    step on one device-resident batch; "flat": the same with the optimizer flattened; "scan": with the layers scanned;
    "fit": `classifier.fit` over n fresh batches (host batching, transfers and the fit loop included)."""
    classifier = peers.flaxbert_classifier(shape.model, shape.precision, attention_kernel=attention_kernel,
                                           scan_layers=mode == "scan")  # fmt: skip
    if mode == "flat":
        import optax

        classifier.compile(optimizer=optax.flatten(peers.flaxbert_optimizer()))
    if mode == "fit":
        x, y = peers.random_inputs(shape.model, most_steps * shape.batch, SEQ)

        def fit(n):  # returns after a device_get of its metrics: synced
            end = n * shape.batch
            classifier.fit({k: v[:end] for k, v in x.items()}, y[:end], batch_size=shape.batch, verbose=0)

        fit.hlo_text = None  # fit's own program: not labelled (its rows are about the host's loop)
        return fit
    step = peers.flaxbert_train_step(classifier, *peers.random_inputs(shape.model, shape.batch, SEQ))
    train_fn = step[0]
    specs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), step[1:])
    run = peers.step_loop(*step)
    # the program the steps ran (after the first, jax's in-memory cache has it: nothing compiles again)
    run.hlo_text = lambda: train_fn.lower(*specs).compile().as_text()
    return run


def trace_times(trace_dir: str) -> tuple[list[tuple[str, str, float]], dict[str, float]]:
    """The device's kernels in the trace as (kernel name, HLO instruction, microseconds), and microseconds per event
    name over the host's threads (python calls, dispatches, transfers). The kernels are the events on the GPU's
    stream threads, each naming its HLO instruction (`hlo_op`) where the trace records it; on a CPU, which has no
    streams, XLA's per-instruction events on its thread pool stand in (a smoke test's numbers, threads overlapping)."""
    path = glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True)[0]
    with gzip.open(path) as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name"}  # fmt: skip
    timed = [e for e in events if e.get("ph") == "X"]
    on_stream = [e for e in timed if "stream" in threads.get((e["pid"], e["tid"]), "").lower()]
    kernels = on_stream or [e for e in timed if "hlo_op" in e.get("args", {})]
    chosen = {id(e) for e in kernels}
    ops = [(e["name"], e.get("args", {}).get("hlo_op") or hlo_parts.instruction(e["name"]), e["dur"]) for e in kernels]
    host = collections.defaultdict(float)
    for e in timed:
        if id(e) not in chosen and not any(part in e["name"] for part in _PROFILER_EVENTS):
            host[e["name"]] += e["dur"]
    return ops, host


def profile(variant: str, steps: int) -> list[str]:
    model, batch_size, precision, attention_kernel, *modes = variant.split(":")
    for modifier, arm in peers.ARMS.items():
        if modifier in modes:  # combines with one other mode: "...:fit:autodiff"
            base = ":".join([model, batch_size, precision, attention_kernel, *(m for m in modes if m != modifier)])
            with arm():
                lines = profile(base, steps)
            return [lines[0].replace(f"## {base}:", f"## {variant}:", 1), *lines[1:]]
    if len(modes) > 1 or (modes and modes[0] not in ("flat", "fit", "scan")):
        raise ValueError(f"{variant}: the modes are flat, fit and scan, and the A/B arms {', '.join(peers.ARMS)}, "
                         f"which combine with one other")  # fmt: skip
    mode = modes[0] if modes else ""
    shape = peers.Shape.parse(f"{model}:{batch_size}:{precision}")
    traced = FIT_TRACED_STEPS if mode == "fit" else TRACED_STEPS
    began = time.perf_counter()
    run = train_runner(shape, attention_kernel, mode, max(steps, traced, 2))
    built = time.perf_counter() - began
    run(1)
    first = time.perf_counter() - began - built
    run(2)  # a second fit compiles the program that continues the first's optimizer state
    began = time.perf_counter()
    run(steps)
    step_ms = 1e3 * (time.perf_counter() - began) / steps
    flops = peers.train_flops_per_example(shape.model, SEQ) * shape.batch
    lines = [f"## {variant}: step {step_ms:.2f} ms = "
             f"{shape.batch / step_ms * 1e3:,.0f} examples/s ({flops / step_ms / 1e9:,.0f} TFLOP/s by the formula); "
             f"build {built:.1f} s, first step (its compile) {first:.1f} s"]  # fmt: skip
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            began = time.perf_counter()
            run(traced)
            traced_ms = 1e3 * (time.perf_counter() - began) / traced
        ops, host = trace_times(trace_dir)
    labels = hlo_parts.labels(run.hlo_text()) if run.hlo_text else {}
    micros, launches = collections.defaultdict(float), collections.defaultdict(int)
    parts_us, parts_n, named = collections.defaultdict(float), collections.defaultdict(int), collections.Counter()
    for name, op, us in ops:
        micros[name] += us
        launches[name] += 1
        label = labels.get(op, "(not in the program's HLO)")
        parts_us[label] += us
        parts_n[label] += 1
        named[name, label] += 1
    busy = sum(micros.values()) / traced / 1e3
    count = sum(launches.values()) / traced
    lines.append(f"GPU kernel time per step {busy:.2f} ms over {count:,.0f} kernels ({busy / traced_ms:.0%} of the "
                 f"traced steps' wall time, {traced_ms:.2f} ms a step; mean kernel {1e3 * busy / max(count, 1):.1f} "
                 "us)")  # fmt: skip
    for name, us in sorted(micros.items(), key=lambda item: -item[1])[:TOP]:
        label = _most_named(named, name) if labels else ""
        lines.append(f"{us / traced / 1e3:8.3f} ms {launches[name] // traced:5d}x  {name[:80]}{label}")
    kinds_us, kinds_n = collections.defaultdict(float), collections.defaultdict(int)
    for name, us in micros.items():
        kind = re.sub(r"[._]\d+$", "", name)  # loop_add_fusion_12 -> loop_add_fusion
        kinds_us[kind] += us
        kinds_n[kind] += launches[name]
    lines.append("by kind, the most launched first:")
    for kind, n in sorted(kinds_n.items(), key=lambda item: -item[1])[:TOP]:
        lines.append(f"{kinds_us[kind] / traced / 1e3:8.3f} ms {n // traced:5d}x  {kind[:110]}")
    if labels:
        lines.append("by part of the model (each kernel's HLO instruction's op_name: pass and module path; a fusion "
                     "takes the path most of its ops share; ~ a guess from its operands):")  # fmt: skip
        for label, us in sorted(parts_us.items(), key=lambda item: -item[1])[:TOP]:
            lines.append(f"{us / traced / 1e3:8.3f} ms {parts_n[label] // traced:5d}x  {label[:110]}")
    lines.append("host events per step, the longest first (nested events each count):")
    for name, us in sorted(host.items(), key=lambda item: -item[1])[:HOST_TOP]:
        lines.append(f"{us / traced / 1e3:8.3f} ms  {name[:110]}")
    return lines


def _most_named(named: collections.Counter, kernel: str) -> str:
    """`  [part]` for a kernel name: the part most of its launches ran (a cuBLAS kernel serves many matmuls)."""
    counts = [(n, label) for (name, label), n in named.items() if name == kernel]
    n, label = max(counts)
    others = len(counts) - 1
    return f"  [{label}{f' and {others} more' if others else ''}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="bert_base:256:bfloat16:auto,bert_base:32:bfloat16:auto,"
                        "bert_base:32:bfloat16:auto:flat,bert_base:256:bfloat16:xla",
                        help="model:batch:precision:attention_kernel[:flat|:fit|:scan|:autodiff|:xla_masks|"
                             ":model_casts|:xla_norms|:no_kernels|...],...")  # fmt: skip
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compilation-cache", default=None, help="a persistent compile cache directory to use")
    parser.add_argument("--out", default=None, help="also write the report here")
    args = parser.parse_args()
    if args.compilation_cache:
        import flaxbert

        flaxbert.enable_compilation_cache(args.compilation_cache)
    flags = os.environ.get("XLA_FLAGS", "")
    report = [f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, XLA_FLAGS={flags!r}"]
    print(report[0], flush=True)
    for variant in args.variants.split(","):
        try:
            lines = profile(variant, args.steps)
        except Exception as error:  # one failing variant must not lose the others
            lines = [f"## {variant}: {type(error).__name__}: {str(error)[:300]}"]
        print("\n".join(lines), flush=True)
        report += lines
        if args.out:
            pathlib.Path(args.out).write_text("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
