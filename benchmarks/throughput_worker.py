"""The subprocess side of throughput.py: measures one framework on some shapes and prints one `RESULT {json}` line
per row, after a `MEASURED {json}` line each time a row gains a number (see `_Rows`). Only the framework being
measured is imported."""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import resource
import time
import traceback

import numpy as np
import peers

# Workers that call flaxbert.reuse_host_memory() on CPU: flaxbert as train.py runs it, and keras-hub given the same
# glibc settings (XLA:CPU's per-step buffers page-fault the same way under Keras), so the gain is shown for both.
REUSE_HOST_MEMORY = ("flaxbert", "flaxbert_scan", "flaxbert_pallas", "flaxbert_cudnn", "flaxbert_xla",
                     "flaxbert_one_thread", "keras_hub_reuse_host_memory")  # fmt: skip


def run_group(args) -> None:
    measure = {"flaxbert": _flaxbert, "flaxbert_scan": functools.partial(_flaxbert, scan_layers=True),
               "flaxbert_pallas": functools.partial(_flaxbert, attention_kernel="pallas"),
               "flaxbert_cudnn": functools.partial(_flaxbert, attention_kernel="cudnn"),
               "flaxbert_xla": functools.partial(_flaxbert, attention_kernel="xla"),
               "flaxbert_default_malloc": _flaxbert, "flaxbert_one_thread": _flaxbert, "keras_hub": _keras_hub,
               "keras_hub_reuse_host_memory": _keras_hub, "transformers": _transformers}[args.worker]  # fmt: skip
    if args.device == "cpu" and args.worker in REUSE_HOST_MEMORY:  # before jax starts, as train.py does on CPU
        from flaxbert.host_memory import reuse_host_memory

        if not reuse_host_memory():
            raise RuntimeError("flaxbert.reuse_host_memory() did not take effect in this worker")
    if args.worker == "flaxbert_one_thread":  # predict's steps from one host thread, as before concurrent_steps
        from flaxbert.training import concurrent_steps

        concurrent_steps.CPU_THREADS = 1
    backend = _Backend(args.worker, args.device, args.compilation_cache)
    for shape in sorted((peers.Shape.parse(s) for s in args.shapes.split(",")), key=lambda s: s.batch):
        rows = _Rows(args.worker, shape, args.seq, backend)
        try:
            measure(shape, args.seq, args.steps, args.repeats, backend, _predict_batch(shape, args.predict_batch), rows)
        except Exception as error:  # one failing shape must not stop the others
            traceback.print_exc()
            rows.fail(f"{type(error).__name__}: {str(error)[:300]}")
        gc.collect()
        backend.release()


class _Rows:
    """The rows of one shape, printed as they are measured, so a worker cut off by its time limit still reports them.

    `add` puts fields in a row and prints the row so far as a `MEASURED {json}` line; `finish` prints the whole row as
    its `RESULT {json}` line. throughput.worker_rows keeps a row's last `MEASURED` line when no `RESULT` line follows
    it. A row is the worker's (`row=None`) or one of its variants (`row="jitted step"`: framework "flaxbert, jitted
    step"). Each field is added once it is fully measured, and each row is added to before anything of it can fail.
    """

    def __init__(self, worker, shape, seq, backend):
        self.worker, self.shape, self.seq, self.backend = worker, shape, seq, backend
        self.open = {}  # framework -> fields so far, of each row added to and not finished

    def add(self, row=None, **fields):
        framework = self._framework(row)
        self.open.setdefault(framework, {}).update(fields)
        self._print("MEASURED", framework, self.open[framework])

    def finish(self, row=None, **fields):
        framework = self._framework(row)
        fields = dict(self.open.pop(framework, {}), **fields)
        fields.setdefault("peak_memory_bytes", self.backend.peak_memory())
        fields["memory_kind"] = "device peak" if self.backend.device == "gpu" else "peak RSS"
        self._print("RESULT", framework, fields)

    def fail(self, error: str):
        """Prints each open row (or, when none is, the worker's row) as a `RESULT` line with `error` and its fields."""
        for framework, fields in (self.open or {self.worker: {}}).items():
            self._print("RESULT", framework, dict(fields, error=error))
        self.open.clear()

    def _framework(self, row):
        return self.worker if row is None else f"{self.worker}, {row}"

    def _print(self, kind, framework, fields):
        shape, seq = self.shape, self.seq
        row = {"framework": framework, "model": shape.model, "batch": shape.batch, "precision": shape.precision,
               "seq": seq, **fields}  # fmt: skip
        if "train_examples_per_s" in row:
            flops = peers.train_flops_per_example(shape.model, seq)
            rate = row["train_examples_per_s"]
            peak = next((v for k, v in peers.PEAK_FLOPS.items() if k in self.backend.device_name), None)
            row.update(train_tokens_per_s=rate * seq, flops_per_example=flops, train_tflops=flops * rate / 1e12,
                       mfu=None if peak is None or self.backend.device == "cpu" else flops * rate / peak)  # fmt: skip
        if "predict_examples_per_s" in row:
            row["predict_tokens_per_s"] = row["predict_examples_per_s"] * seq
        row["device_name"] = self.backend.device_name
        print(f"{kind} {json.dumps(row)}", flush=True)


class _Backend:
    """Initialises jax or torch on the requested device, and imports the framework's library, before any timing (the
    first step is timed from the model's building for each framework alike); reads peak memory."""

    def __init__(self, framework: str, device: str, compilation_cache):
        self.device, self.torch = device, framework == "transformers"
        _import_library(framework)
        if self.torch:
            import torch

            if device == "gpu":
                if not torch.cuda.is_available():
                    raise RuntimeError("--device gpu but torch sees no CUDA device")
                torch.backends.cuda.matmul.allow_tf32 = True
                torch.backends.cudnn.allow_tf32 = True
                torch.zeros(1, device="cuda").sum().item()
                self.device_name = torch.cuda.get_device_name()
            else:
                self.device_name = f"cpu: {peers.cpu_name()}"
            return
        import jax

        if compilation_cache:
            import flaxbert

            flaxbert.enable_compilation_cache(compilation_cache)
        found = jax.default_backend()
        if (device == "gpu") != (found == "gpu"):
            raise RuntimeError(f"--device {device} but jax's default backend is {found}")
        jax.numpy.zeros(1).block_until_ready()
        self.jax_device = jax.local_devices()[0]
        self.device_name = self.jax_device.device_kind if device == "gpu" else f"cpu: {peers.cpu_name()}"

    def sync(self, tree=None):  # the argument is what jax must wait for; torch syncs the whole device
        if self.torch:
            import torch

            if self.device == "gpu":
                torch.cuda.synchronize()
        else:
            import jax

            jax.block_until_ready(tree)

    def peak_memory(self) -> int:
        if self.device == "cpu":
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
        if self.torch:
            import torch

            return int(torch.cuda.max_memory_allocated())
        return int(self.jax_device.memory_stats()["peak_bytes_in_use"])

    def release(self):
        if self.torch and self.device == "gpu":
            import torch

            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()


def _import_library(framework: str) -> None:
    """The framework's model classes, imported (transformers and keras-hub load them lazily: the first step timed
    their imports, 0.6 s for keras-hub and up to 4 s for transformers on a busy 2-core VM, and not flaxbert's)."""
    if framework == "transformers":
        import transformers

        transformers.BertForSequenceClassification, transformers.DistilBertForSequenceClassification  # noqa: B018
    elif framework.startswith("keras_hub"):
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import keras_hub

        keras_hub.models.BertTextClassifier, keras_hub.models.DistilBertTextClassifier  # noqa: B018
    else:
        import flaxbert

        flaxbert.TextClassifier  # noqa: B018


def _predict_batch(shape, requested: int | None) -> int:
    """The predict batch of a row: `--predict-batch`, else the larger of 256 and the train batch."""
    return requested or max(256, shape.batch)


def _timed(fn, sync) -> float:
    began = time.perf_counter()
    sync(fn())
    return time.perf_counter() - began


def _best(fn, sync, repeats: int) -> float:
    """The fastest of `repeats` timed calls of `fn` (each ends with a device sync), in seconds."""
    return min(_timed(fn, sync) for _ in range(repeats))


def _fit_step_s(fit, sync, steps: int, repeats: int, marginal: bool) -> tuple[float, float, str]:
    """(Seconds per train step of `fit(n)`, a one-epoch fit over n batches; seconds it pays once per call; how the
    step was estimated).

    One untimed `fit(steps)` first: a framework's second fit may compile what its first did not need (flaxbert's
    continues the first fit's optimizer state, a program of its own; on an H200 in session 22 it cost up to 0.3-0.8
    s, so the first timed fit(steps) ran that much slower than fit(2 * steps) and the marginal rates came out
    negative).
    Then both lengths, `steps` and 2 * `steps`, are timed `repeats` times, taking turns so a burst of load hits both
    alike. `marginal` (GPU): the step is (best time of fit(2 * steps) - best of fit(steps)) / steps, so what each
    call pays once (optimizer state, data adapter, the epoch-end sync) cancels out, as it does in a long fit; a GPU
    step is ~10 ms, and those costs would weigh on a short fit. Otherwise (CPU): the best whole fit(2 * steps) /
    (2 * steps). A CPU step takes tens of ms or more (bert_tiny at batch 32: 57 ms in session 27), so the once-per-call
    costs are small beside a 2 * `steps` fit (session 27's marginal estimates of them: -0.02 to -0.01 s), while the
    difference of two noisy timings is not: sessions 4-6 read once-per-call costs of -2.6 to +1.2 s from it (the true
    ones ~0), which moved the CPU train rates by up to 20% either way. A marginal step that is not positive (timings
    too noisy to difference) falls back to the whole fit, a step no faster than the true one. The second value is the
    marginal estimate of the per-call cost; the third is "marginal" or "whole fit", the estimate used.
    """
    sync(fit(steps))
    best = {steps: float("inf"), 2 * steps: float("inf")}
    for _ in range(repeats):
        for n in best:
            best[n] = min(best[n], _timed(lambda n=n: fit(n), sync))
    step = (best[2 * steps] - best[steps]) / steps
    fixed = best[steps] - steps * step
    if marginal and step > 0:
        return step, fixed, "marginal"
    return best[2 * steps] / (2 * steps), fixed, "whole fit"


# -- flaxbert ------------------------------------------------------------------------------------------------------
def _flaxbert(shape, seq, steps, repeats, backend, pb, rows, scan_layers=False, attention_kernel="auto"):
    import jax

    from flaxbert.parallel import batch_sharding

    x, y = peers.random_inputs(shape.model, 2 * steps * shape.batch, seq)
    px, _ = peers.random_inputs(shape.model, steps * pb, seq, seed=1)
    rows.add(path="classifier.fit / classifier.predict", predict_batch=pb)
    began = time.perf_counter()
    classifier = peers.flaxbert_classifier(shape.model, shape.precision, scan_layers=scan_layers,
                                           attention_kernel=attention_kernel)  # fmt: skip
    first = {k: v[: shape.batch] for k, v in x.items()}
    classifier.fit(first, y[: shape.batch], batch_size=shape.batch, epochs=1, verbose=0)
    rows.add(first_step_s=time.perf_counter() - began)  # fit returns after a device_get of its metrics: synced

    def fit(n):
        end = n * shape.batch
        return classifier.fit({k: v[:end] for k, v in x.items()}, y[:end], batch_size=shape.batch, verbose=0)

    fit_step_s, fit_fixed_s, estimate = _fit_step_s(fit, backend.sync, steps, repeats, marginal=backend.device == "gpu")
    rows.add(train_examples_per_s=shape.batch / fit_step_s, fit_fixed_s=fit_fixed_s, train_estimate=estimate)
    classifier.predict(px, batch_size=pb, verbose=0)  # compiles
    predict_s = _best(lambda: classifier.predict(px, batch_size=pb, verbose=0), backend.sync, repeats)
    rows.finish(predict_examples_per_s=len(px["token_ids"]) / predict_s)

    # The same compiled steps, driven directly on one batch that crossed to the device once.
    jitted = "jitted step"
    rows.add(jitted, path="the jitted train / predict step on a device-resident batch", first_step_s=None,
             predict_batch=pb)  # fmt: skip
    train_fn, state, sums, batch, seed = peers.flaxbert_train_step(classifier, first, y[: shape.batch])
    state, sums = [state], [sums]  # boxes the step loop below reassigns

    def train_steps(count):
        for _ in range(count):
            state[0], sums[0] = train_fn(state[0], sums[0], batch, seed)
        return sums[0]

    backend.sync(train_steps(2))
    step_s = _best(lambda: train_steps(steps), backend.sync, repeats)
    rows.add(jitted, train_examples_per_s=steps * shape.batch / step_s)
    state.clear()  # frees the device copy of the train state before predicting
    predict_fn, params = classifier._inference_step("predict")[:2]  # the params as `predict` gives them
    inputs = jax.device_put({k: v[:pb] for k, v in px.items()}, batch_sharding(classifier.mesh))
    backend.sync(predict_fn(params, inputs))
    raw_predict_s = _best(lambda: [predict_fn(params, inputs) for _ in range(steps)], backend.sync, repeats)
    rows.finish(jitted, predict_examples_per_s=steps * pb / raw_predict_s)


# -- keras-hub -----------------------------------------------------------------------------------------------------
def _keras_hub(shape, seq, steps, repeats, backend, pb, rows):
    import keras

    x, y = peers.random_inputs(shape.model, 2 * steps * shape.batch, seq)
    px, _ = peers.random_inputs(shape.model, steps * pb, seq, seed=1)
    rows.add(path="keras.Model.fit / keras.Model.predict", predict_batch=pb)
    began = time.perf_counter()
    classifier = peers.keras_hub_classifier(shape.model, shape.precision)
    first = {k: v[: shape.batch] for k, v in x.items()}
    keras.Model.fit(classifier, first, y[: shape.batch], batch_size=shape.batch, epochs=1, verbose=0)
    rows.add(first_step_s=time.perf_counter() - began)  # fit pulls its logs to the host at the epoch end: synced

    def fit(n):
        end = n * shape.batch
        return keras.Model.fit(classifier, {k: v[:end] for k, v in x.items()}, y[:end], batch_size=shape.batch,
                               epochs=1, verbose=0)  # fmt: skip

    fit_step_s, fit_fixed_s, estimate = _fit_step_s(fit, backend.sync, steps, repeats, marginal=backend.device == "gpu")
    rows.add(train_examples_per_s=shape.batch / fit_step_s, fit_fixed_s=fit_fixed_s, train_estimate=estimate)
    keras.Model.predict(classifier, px, batch_size=pb, verbose=0)
    predict_s = _best(lambda: keras.Model.predict(classifier, px, batch_size=pb, verbose=0), backend.sync, repeats)
    rows.finish(predict_examples_per_s=len(px["token_ids"]) / predict_s)


# -- transformers --------------------------------------------------------------------------------------------------
def _transformers(shape, seq, steps, repeats, backend, pb, rows):
    import torch

    device = "cuda" if backend.device == "gpu" else "cpu"
    x, y = peers.random_inputs(shape.model, steps * shape.batch, seq)
    px, _ = peers.random_inputs(shape.model, steps * pb, seq, seed=1)
    cuda = device == "cuda"
    batches = _torch_batches(x, torch.from_numpy(y.astype(np.int64)), shape.batch, pin=cuda)
    autocast = (
        (lambda: torch.autocast(device, dtype=torch.bfloat16))
        if shape.precision == "bfloat16"
        else contextlib.nullcontext
    )

    rows.add(path="eager PyTorch loop / inference_mode predict", predict_batch=pb)
    began = time.perf_counter()
    model = peers.transformers_classifier(shape.model, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peers.LEARNING_RATE, weight_decay=peers.WEIGHT_DECAY)
    model.train()

    def train_step(batch):
        inputs, labels = batch
        inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        with autocast():
            loss = model(**inputs, labels=labels.to(device, non_blocking=True)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    train_step(batches[0])
    backend.sync()
    rows.add(first_step_s=time.perf_counter() - began)
    for batch in batches[1:3]:
        train_step(batch)
    train_s = _best(lambda: [train_step(batch) for batch in batches], backend.sync, repeats)
    rows.add(train_examples_per_s=len(y) / train_s)

    model.eval()
    pbatches = _torch_batches(px, None, pb, pin=cuda)

    @torch.inference_mode()
    def predict(chunks):
        with autocast():
            return [model(**{k: v.to(device, non_blocking=True) for k, v in c.items()}).logits.float().cpu()
                    for c, _ in chunks]  # fmt: skip

    predict(pbatches[:1])
    predict_s = _best(lambda: predict(pbatches), backend.sync, repeats)
    rows.finish(predict_examples_per_s=len(px["token_ids"]) / predict_s)


def _torch_batches(x, y, batch_size, pin):
    inputs = peers.torch_inputs(x)
    out = []
    for start in range(0, len(x["token_ids"]), batch_size):
        chunk = {k: v[start : start + batch_size] for k, v in inputs.items()}
        if pin:
            chunk = {k: v.pin_memory() for k, v in chunk.items()}
        out.append((chunk, None if y is None else y[start : start + batch_size]))
    return out
