"""The host overhead of `classifier.fit` per step, on a model so small that the device step costs almost nothing.

    PYTHONPATH=. python benchmarks/fit_overhead.py                  # 1-layer BERT, hidden 32, seq 16, batch 32
    PYTHONPATH=. python benchmarks/fit_overhead.py --steps 400 --repeats 7

Rows:
- "jitted step": the compiled train step called in a Python loop on one batch already on the device; the floor.
- "fit ...": `classifier.fit` at one setting of verbose / on_log. Its per-step cost is the marginal one, (time of a
  fit over 2N steps - time of a fit over N steps) / N, so what every call pays once (state creation, data
  preparation, the epoch-end sync) cancels out. That once-per-call cost is the "fixed" column, measured apart
  (the intercept time(N) - N * step is too noisy): the best of `repeats` x 5 fits over 2 steps, minus 2 jitted steps.
  "main-thread CPU" is the same marginal cost in CPU time of the thread that calls fit: the loop's own host work.
Each time is the fastest of `repeats` calls, and the settings take turns inside every repeat, so a burst of load
from another process hits all of them alike.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import jax
import numpy as np
import optax

import flaxbert
from flaxbert.training import programs

SETTINGS = {  # row name -> classifier.fit keyword arguments
    "fit verbose=0": dict(verbose=0),
    "fit verbose=1": dict(verbose=1),
    "fit verbose=0 on_log": dict(verbose=0, on_log=lambda row: None, log_every=50),
    "fit verbose=1 on_log": dict(verbose=1, on_log=lambda row: None, log_every=50),
}


def tiny_classifier(vocab: int, seq: int):
    backbone = flaxbert.BertBackbone(vocab, num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=64,
                                     max_sequence_length=seq)  # fmt: skip
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=2)
    classifier.compile(optimizer=optax.adamw(1e-3))
    return classifier


def random_data(size: int, vocab: int, seq: int):
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, vocab, (size, seq), dtype=np.int32),
         "segment_ids": np.zeros((size, seq), np.int32), "padding_mask": np.ones((size, seq), np.int32)}  # fmt: skip
    return x, rng.integers(0, 2, size, dtype=np.int32)


def _timed(fn) -> np.ndarray:
    """(wall seconds, this thread's CPU seconds) of `fn()`. The thread's CPU time is the host work of the loop
    (dispatch and bookkeeping, not the prefetch thread or XLA's); unlike wall time, other processes barely move it."""
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return np.array([time.perf_counter() - wall, time.thread_time() - cpu])


def jitted_step_seconds(classifier, x, y, batch: int, steps: int) -> np.ndarray:
    """(Wall, CPU) seconds per call of the compiled train step on a device-resident batch (the program fit runs)."""
    (train_fn, create_state), _, _ = classifier._steps("train", True)
    seed = programs.seed_array(0, classifier.mesh)
    rows = {"inputs": {k: v[:batch] for k, v in x.items()}, "label": y[:batch],
            "weight": np.ones(batch, np.float32), "mask": np.ones(batch, np.float32)}  # fmt: skip
    device_batch = jax.device_put(rows)
    state, sums = [create_state(classifier.params)], [programs.zero_totals(classifier.mesh)]

    def run():
        for _ in range(steps):
            state[0], sums[0] = train_fn(state[0], sums[0], device_batch, seed)
        jax.block_until_ready(sums[0])

    run()  # warm-up (the first call also compiles)
    return _timed(run) / steps


def fit_seconds(classifier, x, y, batch: int, steps: int, kwargs: dict) -> np.ndarray:
    """(Wall, CPU) seconds of one `classifier.fit` over `steps` batches (it ends synced: history is host numbers)."""
    part = {k: v[: steps * batch] for k, v in x.items()}
    with contextlib.redirect_stderr(io.StringIO()):  # tqdm's bar goes to stderr: drawn, but not onto the table
        return _timed(lambda: classifier.fit(part, y[: steps * batch], batch_size=batch, epochs=1, **kwargs))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="N: fits run N and 2N steps")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=100)
    args = parser.parse_args()
    n, batch = args.steps, args.batch
    x, y = random_data(2 * n * batch, args.vocab, args.seq)
    classifier = tiny_classifier(args.vocab, args.seq)
    for kwargs in SETTINGS.values():
        fit_seconds(classifier, x, y, batch, 2, kwargs)  # compiles, and warms every code path once
    best = {"jitted step": np.inf} | {(name, k): np.inf for name in SETTINGS for k in (n, 2 * n)}
    for _ in range(args.repeats):  # wall and CPU minima taken separately
        best["jitted step"] = np.minimum(best["jitted step"], jitted_step_seconds(classifier, x, y, batch, 2 * n))
        for name, kwargs in SETTINGS.items():
            for k in (n, 2 * n):
                best[name, k] = np.minimum(best[name, k], fit_seconds(classifier, x, y, batch, k, kwargs))
    short = {name: np.inf for name in SETTINGS}
    for _ in range(5 * args.repeats):
        for name, kwargs in SETTINGS.items():
            short[name] = min(short[name], fit_seconds(classifier, x, y, batch, 2, kwargs)[0])
    floor = best["jitted step"] * 1e3
    print(f"\n{jax.devices()[0].device_kind}, batch {batch}, seq {args.seq}, N={n}, best of {args.repeats}\n")
    print("| path | wall ms per step | over the jitted step | examples/s | main-thread CPU ms per step | fixed ms |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| jitted step | {floor[0]:.3f} | 0 | {batch / floor[0] * 1e3:,.0f} | {floor[1]:.3f} | - |")
    for name in SETTINGS:
        step = (best[name, 2 * n] - best[name, n]) / n * 1e3
        fixed = short[name] * 1e3 - 2 * floor[0]
        print(
            f"| {name} | {step[0]:.3f} | {step[0] - floor[0]:+.3f} | {batch / step[0] * 1e3:,.0f} | {step[1]:.3f} "
            f"| {fixed:.1f} |"
        )


if __name__ == "__main__":
    main()
