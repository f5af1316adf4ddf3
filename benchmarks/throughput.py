r"""Train and predict throughput, time to first step, peak memory and MFU: flaxbert vs keras-hub vs transformers.

Same shapes, same random token data (every token real), dropout 0.1 everywhere, 2 classes, AdamW(5e-5, weight decay
0.01), random init. Each (framework, model, precision) runs in its own subprocess, which isolates memory and thread
pools; inside it the batch sizes run in ascending order, each on a freshly built model. A failing framework or shape
shows its error in the table and the run goes on; a worker cut off by its time limit (or killed) keeps every number
it had measured, and its row's error names them. `--rounds N` runs the whole list of subprocesses N times,
round-robin: a shared host's speed drifts over minutes, and round-robin puts every framework through the same
stretches; the table keeps each row's best round (as each pass within a round keeps its best), and the ratios are
printed for every round alone and for the best rounds. The report goes to `--json` (default throughput.json in the
temporary directory, /tmp on Linux, so a plain run never overwrites a committed result; name a file under
benchmarks/results to keep one), and its chart beside it (plot.py).

    python benchmarks/throughput.py                                     # CPU: bert_tiny, batch 32, seq 128, fp32
    python benchmarks/throughput.py --predict-batch 32                  # predict at the train batch too
    python benchmarks/throughput.py --device gpu --shapes bert_base:32:bfloat16,bert_base:256:bfloat16 --steps 20
    python benchmarks/throughput.py --device gpu --frameworks flaxbert,flaxbert_scan    # scan_layers A/B
    python benchmarks/throughput.py --device gpu --frameworks flaxbert_xla,flaxbert_pallas,flaxbert_cudnn  # attention
    python benchmarks/throughput.py --rounds 2 --frameworks \
        flaxbert,flaxbert_default_malloc,keras_hub,keras_hub_reuse_host_memory,transformers \
        --json benchmarks/results/throughput_cpu_sessionN.json                                   # the CPU run, kept
    python benchmarks/throughput.py --rounds 3 --frameworks flaxbert,flaxbert_one_thread   # CPU predict threads A/B

On CPU the flaxbert worker first calls `flaxbert.reuse_host_memory()` (train.py does the same on a CPU-only host;
a notebook calls it itself): XLA:CPU's per-step temporary buffers then stop page-faulting. The variants
`flaxbert_default_malloc` (flaxbert without it) and `keras_hub_reuse_host_memory` (keras-hub with it) show what it
is worth to each.

What is timed (after warm-up, with a final device sync; every framework at verbose=0):
- flaxbert: `classifier.fit(x=dict_of_int_arrays, y, batch_size, epochs=1)`. On GPU the train rate is batch / the
  marginal cost of a step, (best time of a fit over 2 * `steps` batches - best over `steps`) / `steps`, so what each
  call pays once (state creation, data preparation, the epoch-end sync; the row's `fit_fixed_s`) is left out, as it is
  from any long fit. On CPU it is the best whole fit over 2 * `steps` batches: there a step takes tens of ms or more
  (bert_tiny at batch 32: 57 ms in session 27), the once-per-call costs are small beside that fit (the marginal
  estimate of them read -0.02 to -0.01 s, i.e. nothing measurable), and the marginal difference of two noisy timings
  moved the rate by up to 20%. One untimed fit over `steps` batches comes first (a second fit may compile what the
  first did not: flaxbert's continued optimizer state), and a GPU marginal step that is not positive falls back to the
  whole fit, named under the table (`throughput_worker._fit_step_s`). Then `classifier.predict(x,
  batch_size=predict_batch)`, whole call timed.
  The "jitted step" row drives the same compiled steps directly on one batch placed on the device once, from one
  host thread, so for training and on an accelerator the gap between the two rows is flaxbert's per-step loop
  overhead. On a CPU `predict` runs two steps at once from two host threads (`training/concurrent_steps.py`), so
  there its row can beat the jitted one: that gap is the threading's gain, not overhead.
- keras-hub: `keras.Model.fit` (timed the same way) / `keras.Model.predict` on the keras-hub classifier
  (Keras 3's own numpy array adapter). keras-hub 0.32's `PipelineModel.fit` override wraps numpy input in grain or
  tf.data before calling the same `keras.Model.fit`; neither is installed (no TensorFlow) and with
  `preprocessor=None` it adds no work.
- transformers: an eager PyTorch loop (`model(**batch, labels=y)`, `loss.backward()`, `AdamW.step()`), host batches
  moved to the device each step; predict under `torch.inference_mode()` with `model.eval()`. GPU: TF32 matmuls
  enabled, bf16 rows under `torch.autocast(dtype=torch.bfloat16)`.
Time to first step: from the start of model building (backend already initialised) to the end of the first
training step, compilation included. Peak memory: GPU: device peak bytes (jax `memory_stats()['peak_bytes_in_use']`,
`torch.cuda.max_memory_allocated`); CPU: the subprocess's peak RSS. Both are process-lifetime peaks except torch's
GPU one (reset per row); batches run in ascending order, so a row's peak is its own unless a smaller batch before it
needed more.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import peers

# What a worker measures, in order; a row cut off by a time limit holds the first few (throughput_worker._Rows).
MEASURED = ("first_step_s", "train_examples_per_s", "fit_fixed_s", "predict_examples_per_s")
FRAMEWORKS = ("flaxbert", "keras_hub", "transformers")
# Run only when named: flaxbert with BertBackbone(scan_layers=True); flaxbert with attention_kernel="pallas" (GPU:
# on CPU its kernels only run interpreted), "cudnn" (GPU, bf16: cuDNN's fused attention in predict; elsewhere the
# XLA path) or "xla" (the "flaxbert" row runs the library's default, "auto": the Pallas kernels on a recent NVIDIA GPU
# in 16 bits, else XLA's ops); flaxbert without reuse_host_memory() (glibc's default malloc settings); flaxbert with
# predict's steps from one host thread (CPU; `flaxbert.training.concurrent_steps`); keras-hub with
# reuse_host_memory()'s settings. See throughput_worker.REUSE_HOST_MEMORY.
VARIANTS = ("flaxbert_scan", "flaxbert_pallas", "flaxbert_cudnn", "flaxbert_xla", "flaxbert_default_malloc",
            "flaxbert_one_thread", "keras_hub_reuse_host_memory")  # fmt: skip
DEFAULT_SHAPES = {"cpu": "bert_tiny:32:float32", "gpu": ",".join(
    f"{m}:{b}:{p}" for m in ("bert_base", "distil_bert_base") for p in ("bfloat16", "float32") for b in (32, 256)
)}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--shapes", default=None, help="model:batch:precision,... (default depends on --device)")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None,
                        help="flaxbert and keras-hub time fits of STEPS and 2 x STEPS batches, transformers' loop "
                             "STEPS steps; predict runs STEPS batches (cpu 30, gpu 20)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=None, help="timed passes, the best counts (cpu 3, gpu 1)")
    parser.add_argument("--predict-batch", type=int, default=None, help="default: the larger of 256 and the batch")
    parser.add_argument("--rounds", type=int, default=1, help="run every subprocess this many times, round-robin")
    parser.add_argument("--budget-s", type=float, default=None, help="start no new subprocess after this many seconds")
    parser.add_argument("--timeout-s", type=float, default=600, help="limit for one subprocess")
    parser.add_argument("--compilation-cache", default=None, help="jax persistent compilation cache dir (default off)")
    parser.add_argument("--json", type=pathlib.Path, default=pathlib.Path(tempfile.gettempdir()) / "throughput.json",
                        help="the report (default %(default)s: benchmarks/results holds the kept ones)")  # fmt: skip
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.steps = args.steps or (30 if args.device == "cpu" else 20)
    args.repeats = args.repeats or (3 if args.device == "cpu" else 1)
    if args.worker:
        from throughput_worker import run_group

        return run_group(args)
    frameworks = [f for f in args.frameworks.split(",") if f]
    unknown = set(frameworks) - set(FRAMEWORKS + VARIANTS)
    if unknown:
        parser.error(f"unknown frameworks {sorted(unknown)}; choose from {FRAMEWORKS + VARIANTS}")
    shapes = [peers.Shape.parse(s) for s in (args.shapes or DEFAULT_SHAPES[args.device]).split(",")]
    rows, began = [], time.perf_counter()
    for round_ in range(args.rounds):
        for (model, precision), batches in _groups(shapes).items():
            for framework in frameworks:
                left = None if args.budget_s is None else args.budget_s - (time.perf_counter() - began)
                if left is not None and left < 15:
                    done = [_failed(framework, model, b, precision, "skipped: out of time budget") for b in batches]
                else:
                    done = _run_worker(args, framework, model, precision, batches, left)
                rows += [dict(row, round=round_) for row in done]
                _write(args, rows, began, partial=True)  # what finished survives if this process is killed
    report = _write(args, rows, began, partial=False)
    print_report(report)
    print(f"\nwrote {args.json}")
    from plot import write_and_say  # here, not at the top: plot imports this module's best_of_rounds

    write_and_say(report, args.json)


def _write(args, rows, began, partial: bool) -> dict:
    report = {
        "benchmark": "throughput",
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "partial": partial,
        "device": _device_info(args.device, rows),
        "versions": peers.versions(),
        "seq": args.seq,
        "steps": args.steps,
        "repeats": args.repeats,
        "rounds": args.rounds,
        "flops_formula": peers.FLOPS_FORMULA,
        "peak_flops": peers.PEAK_FLOPS,
        "wall_s": time.perf_counter() - began,
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _groups(shapes):
    groups = {}
    for s in shapes:
        groups.setdefault((s.model, s.precision), set()).add(s.batch)
    return {k: sorted(v) for k, v in groups.items()}


def _failed(framework, model, batch, precision, error):
    return {"framework": framework, "model": model, "batch": batch, "precision": precision, "error": error}


def _run_worker(args, framework, model, precision, batches, left):
    """One subprocess for (framework, model, precision); its rows, or an error row for each batch it did not finish."""
    shapes = ",".join(f"{model}:{b}:{precision}" for b in batches)
    command = [sys.executable, "-u", __file__, "--worker", framework, "--device", args.device, "--seq", str(args.seq),
               "--steps", str(args.steps), "--repeats", str(args.repeats), "--shapes", shapes]  # fmt: skip
    if args.predict_batch:
        command += ["--predict-batch", str(args.predict_batch)]
    if args.compilation_cache:
        command += ["--compilation-cache", args.compilation_cache]
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONUNBUFFERED="1")
    if args.device == "cpu":
        env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    timeout = args.timeout_s if left is None else min(args.timeout_s, left)
    print(f"== {framework} {model} {precision} batches {batches} (limit {timeout:.0f}s)", flush=True)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        stdout, stderr, status = done.stdout, done.stderr, f"exit status {done.returncode}"
    except subprocess.TimeoutExpired as e:
        stdout, stderr = _text(e.stdout), _text(e.stderr)
        status = f"timed out after {timeout:.0f}s"
    tail = " | ".join(line for line in stderr.strip().splitlines()[-3:])[-400:]
    rows = worker_rows(stdout, status, tail)
    finished = {r["batch"] for r in rows if r["framework"] == framework}
    error = f"{status}: {tail}" if tail else status
    rows += [_failed(framework, model, b, precision, error) for b in batches if b not in finished]
    for row in rows:
        print("   " + _short(row), flush=True)
    return rows


def worker_rows(stdout: str, status: str, tail: str) -> list[dict]:
    """The rows in a worker's stdout, each from its last line: its `RESULT` line, or, when the worker stopped before
    printing that (`status` says how; `tail` is its stderr's), its last `MEASURED` line, which keeps what the row had
    measured, with an `error` that names those fields."""
    last = {}  # (framework, batch) -> (kind, row) of the row's last line; in the order the rows began
    for line in stdout.splitlines():
        kind, _, text = line.partition(" ")
        if kind in ("RESULT", "MEASURED"):
            row = json.loads(text)
            last[row["framework"], row["batch"]] = (kind, row)
    rows = []
    for kind, row in last.values():
        if kind == "MEASURED":
            measured = [k for k in MEASURED if row.get(k) is not None]
            after = f", after measuring {', '.join(measured)}" if measured else ""
            row["error"] = f"{status}{after}: {tail}" if tail else f"{status}{after}"
        rows.append(row)
    return rows


def _text(out):
    return out.decode(errors="replace") if isinstance(out, bytes) else (out or "")


def _short(row):
    rates = [f"{what} {row[f'{what}_examples_per_s']:,.0f} ex/s" for what in ("train", "predict")
             if row.get(f"{what}_examples_per_s") is not None]  # fmt: skip
    error = [f"ERROR {row['error']}"] if "error" in row else []
    return f"{row['framework']} batch {row['batch']}: " + ", ".join(rates + error)


def _device_info(device, rows):
    info = {"kind": device, "cpu": peers.cpu_name(), "cpu_count": os.cpu_count()}
    names = sorted({r["device_name"] for r in rows if r.get("device_name")})
    if names:
        info["accelerators"] = names
    return info


# -- the report ----------------------------------------------------------------------------------------------------
def _fmt(value, spec=",.0f"):
    return "" if value is None else format(value, spec)


def _memory(row):
    peak = row.get("peak_memory_bytes")
    return "" if peak is None else f"{peak / 2**20:,.0f} MiB {row['memory_kind']}"


def print_report(report):
    device = report["device"]
    where = ", ".join(device.get("accelerators", [])) or f"{device['cpu']} ({device['cpu_count']} CPUs)"
    rounds = report.get("rounds", 1)
    print(f"\nseq {report['seq']}, {report['steps']} timed steps (best of {report['repeats']}"
          + (f", then the best of {rounds} round-robin rounds" if rounds > 1 else "") + f"), on {where}; versions: "
          + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))  # fmt: skip
    rows = best_of_rounds(report["rows"])
    print("\n| framework | model | batch | precision | train ex/s | train tokens/s | predict ex/s (batch) "
          "| predict tokens/s | first step s | peak memory | TFLOP/s | MFU | error |")  # fmt: skip
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:  # a row cut off by a time limit shows what it measured, and its error says which
        mfu = "" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
        rate = r.get("predict_examples_per_s")
        predict = "" if rate is None else f"{_fmt(rate)} ({r['predict_batch']})"
        print(f"| {r['framework']} | {r['model']} | {r['batch']} | {r['precision']} | "
              f"{_fmt(r.get('train_examples_per_s'))} | {_fmt(r.get('train_tokens_per_s'))} | {predict} | "
              f"{_fmt(r.get('predict_tokens_per_s'))} | {_fmt(r.get('first_step_s'), '.1f')} | {_memory(r)} | "
              f"{_fmt(r.get('train_tflops'), '.3g')} | {mfu} | {r.get('error', '')} |")  # fmt: skip
    print(f"\nFLOPs: {report['flops_formula']}. TFLOP/s = that x train examples/s. MFU = TFLOP/s / the dense bf16 "
          f"peak ({', '.join(f'{k} {v / 1e12:.0f} TFLOP/s' for k, v in report['peak_flops'].items())}), "
          "for fp32 rows too; on CPU no MFU is given.")  # fmt: skip
    fell_back = [f"{r['framework']} {r['model']} {r['batch']}" for r in rows
                 if r.get("train_estimate") == "whole fit" and device["kind"] == "gpu"]  # fmt: skip
    if fell_back:
        print(f"Train rate from the whole fit(2 x steps), not the marginal step (not positive, or the report was "
              f"recomputed so), so no faster than the true rate: {', '.join(fell_back)}.")  # fmt: skip
    models = sorted({r["model"] for r in rows})
    skipped = ", ".join(f"{m} {100 * peers.first_token_saving(m, report['seq']):.1f}%" for m in models)
    print(f"flaxbert's classifiers compute the last layer at [CLS] alone, so they execute fewer FLOPs than the formula "
          f"counts ({skipped}); every row's TFLOP/s counts the formula's.")  # fmt: skip
    if rounds > 1:
        for round_ in range(rounds):
            print_ratios([r for r in report["rows"] if r.get("round") == round_], f"round {round_ + 1} alone")
    print_ratios(rows, f"best of {rounds} rounds" if rounds > 1 else "")


def best_of_rounds(rows):
    """One row per (framework, model, batch, precision): each rate the best any round reached, as within a round.

    The fastest train round's row carries the train-derived columns; predict rate and time to first step are the
    best over rounds on their own; `*_rounds` keep every round's value. A shape that no round finished keeps the
    first of its error rows that measured the most (a worker cut off by its time limit keeps what it measured).
    """
    groups = {}
    for row in rows:
        groups.setdefault((row["framework"], row["model"], row["batch"], row["precision"]), []).append(row)
    merged = []
    for group in groups.values():
        ok = [r for r in group if "error" not in r]
        if not ok:
            merged.append(max(group, key=lambda r: sum(r.get(k) is not None for k in MEASURED)))
            continue
        best = dict(max(ok, key=lambda r: r["train_examples_per_s"]))
        best.pop("round", None)
        best["predict_examples_per_s"] = max(r["predict_examples_per_s"] for r in ok)
        best["predict_tokens_per_s"] = best["predict_examples_per_s"] * best["seq"]
        first = [r["first_step_s"] for r in ok if r.get("first_step_s") is not None]
        best["first_step_s"] = min(first) if first else None
        for key in ("train_examples_per_s", "predict_examples_per_s"):
            best[f"{key}_rounds"] = [r[key] for r in ok]
        merged.append(best)
    return merged


def print_ratios(rows, title=""):
    """flaxbert's rates over each peer's, for every rate both rows have (a row cut off by a time limit has some)."""
    ok = {(r["framework"], r["model"], r["batch"], r["precision"]): r for r in rows if _has_rate(r)}
    others = [f for f in ("keras_hub", "transformers") if any(k[0] == f for k in ok)]
    if not others:
        return
    print(f"\nflaxbert (public fit / predict) divided by each peer, same shape{f' ({title})' if title else ''}:\n")
    print("| model | batch | precision | " + " | ".join(f"train vs {f} | predict vs {f}" for f in others) + " |")
    print("|---|---:|---|" + "---:|---:|" * len(others))
    for (framework, *shape), mine in ok.items():
        if framework != "flaxbert":
            continue
        cells = []
        for other in others:
            peer = ok.get((other, *shape))
            for key in ("train_examples_per_s", "predict_examples_per_s"):
                both = peer and mine.get(key) is not None and peer.get(key) is not None
                cells.append(f"{mine[key] / peer[key]:.2f}x" if both else "n/a")
        print(f"| {shape[0]} | {shape[1]} | {shape[2]} | " + " | ".join(cells) + " |")


def _has_rate(row):
    return any(row.get(f"{what}_examples_per_s") is not None for what in ("train", "predict"))


if __name__ == "__main__":
    main()
