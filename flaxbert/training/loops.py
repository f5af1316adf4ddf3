"""fit / evaluate / predict as functions over jitted pure steps, on any mesh, with progress and checkpoints."""

from __future__ import annotations

import contextlib
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from flaxbert import checkpoint
from flaxbert.parallel import batch_sharding, replicated, to_global, to_host
from flaxbert.parallel.mesh import warning_stacklevel
from flaxbert.training import compile_ahead, steps
from flaxbert.training.batches import (
    ArrayData,
    batch_lengths,
    epoch_order,
    longest_first,
    make_batch,
    num_batches,
    padded_rows,
    row_lengths,
)
from flaxbert.training.concurrent_steps import host_threads, in_order
from flaxbert.training.preemption import Preemption, hold_sigint_in_steps, watch_sigterm
from flaxbert.training.prefetch import prefetch
from flaxbert.training.programs import device_zero_sums, seed_array, zero_totals

_IN_FLIGHT = 4  # evaluate / predict steps started ahead of the one the host waits for


def _step_rows(rows: int | None, batch_size: int, mesh) -> int:
    """The rows a step of `batch_size` examples takes: `rows`, by default `padded_rows`, as the classifiers pad."""
    devices = mesh.size
    if rows is None:
        return padded_rows(batch_size, devices)
    if rows < batch_size or rows % devices:
        raise ValueError(f"rows={rows} must be at least batch_size={batch_size} and a multiple of the mesh's "
                         f"{devices} devices.")  # fmt: skip
    return rows


def _feed(batch, mesh):
    """A global numpy batch (every process holds it whole) as global arrays sharded over the mesh."""
    return to_global(batch, batch_sharding(mesh))


def batch_specs(data: ArrayData, lengths: list[int], rows: int, mesh) -> dict[int, dict]:
    """For each length, the spec (`compile_ahead.spec`) of a batch `_feed` puts on `mesh`: `rows` rows of
    `make_batch`'s arrays, the inputs cut to that length."""
    example = compile_ahead.spec(make_batch(data, np.arange(1), rows))
    sharding = batch_sharding(mesh)

    def at(length: int) -> dict:
        cut = jax.tree.map(lambda s: jax.ShapeDtypeStruct((rows, length), s.dtype), example["inputs"])
        return jax.tree.map(lambda s: s.update(sharding=sharding), dict(example, inputs=cut))

    return {length: at(length) for length in lengths}


def _compile_for_batches(step_fn, data: ArrayData, order, batch_size: int, rows: int, bucket: bool, mesh,
                         args_at) -> dict:  # fmt: skip
    """Starts compiling `step_fn` for each batch length a loop over `order` meets, first met first; `args_at(batch)`
    gives the step's argument specs around a batch's. Returns each length's future (`compile_ahead`)."""
    specs = batch_specs(data, batch_lengths(data, order, batch_size, bucket), rows, mesh)
    return compile_ahead.compile_ahead(step_fn, {length: args_at(batch) for length, batch in specs.items()})


def compile_fit_ahead(train_fn, state_spec, data: ArrayData, *, batch_size: int, epochs: int, seed: int,
                      shuffle: bool, mesh, rows: int | None = None, bucket: bool = False,
                      group_by_length: bool = False, start: int = 0) -> dict:  # fmt: skip
    """Starts compiling the train programs of the epoch a `fit` with these arguments runs from step `start`, before
    its state exists (`state_spec`), so they compile while the state is built or restored; the `fit` then finds
    them started. Returns their futures (`compile_ahead.compile_ahead`); none where `start` is past the end."""
    per_epoch = num_batches(len(data), batch_size)
    epoch, first = divmod(start, per_epoch)
    if epoch >= epochs:
        return {}
    order = epoch_order(len(data), seed, epoch, shuffle, row_lengths(data) if group_by_length else None, batch_size)
    specs = (state_spec, *compile_ahead.spec((zero_totals(mesh), seed_array(seed, mesh))))
    return _train_programs(
        train_fn, specs, data, order, first, batch_size, _step_rows(rows, batch_size, mesh), bucket, mesh
    )


def _train_programs(train_fn, specs, data: ArrayData, order, first: int, batch_size: int, rows: int, bucket: bool,
                    mesh) -> dict:  # fmt: skip
    """Starts compiling the train programs of an epoch's batches from batch `first` of `order`; `specs`: the
    state's, the metric totals' and the seed's."""
    state_spec, totals_spec, seed_spec = specs
    return _compile_for_batches(train_fn, data, order[first * batch_size :], batch_size, rows, bucket, mesh,
                                lambda batch: (state_spec, totals_spec, batch, seed_spec))  # fmt: skip


def fit(
    state,
    train_fn,
    data: ArrayData,
    *,
    batch_size: int,
    epochs: int,
    seed: int,
    shuffle: bool,
    mesh,
    rows: int | None = None,
    bucket: bool = False,
    group_by_length: bool = False,
    ckpt=None,
    ckpt_every: int | None = None,
    record: dict | None = None,
    saved_totals: dict | None = None,
    validate=None,
    compile_validation=None,
    verbose: int = 1,
    log_every: int = 0,
    on_log=None,
    on_interrupt=None,
):
    """Trains from `state.step` to the end of `epochs`; returns (state, history of per-epoch metrics).

    `state` is consumed: the train step donates it, so its arrays are deleted once training starts (build another
    with `create_state(params, ...)`, which copies the params, to train from the same start again).

    Each step takes `batch_size` examples, padded with weight-0 rows to `rows` (a multiple of the mesh size). The
    data order depends only on (seed, epoch), so a run resumed from a checkpoint at step s feeds exactly the batches
    an uninterrupted run would have fed after s; `group_by_length` puts rows of similar length in the same batch
    (`batches.epoch_order`), which with `bucket` pads far less. With `ckpt`, SIGTERM saves a checkpoint and exits
    with status 0 (without, it ends the process as usual), and the first Ctrl-C saves one after the step, then raises
    KeyboardInterrupt (a second one raises at once). `record` (JSON-able) is saved with every checkpoint,
    beside the data position and the metric totals; a fit resumed mid-epoch passes the latest checkpoint's `totals`
    back as `saved_totals`. `compile_validation(params_spec)`, if given, starts compiling `validate`'s programs
    (`compile_evaluate_ahead`) and returns their futures; it is called once the first epoch's train programs are
    compiling, so the validation finds them ready. `on_log(row)` receives a row of training metrics (loss and
    accuracy over the last `log_every` steps, examples/s) every `log_every` steps, and a row per validation (printed
    too, with `verbose`).
    A SIGTERM during an epoch's last step or its validation exits after the epoch's end (its checkpoint, validation
    and row); a run killed during a validation validates first when it resumes (`checkpoint.validated_steps`), so
    the rows come out as an uninterrupted run's. When anything cuts training short (Ctrl-C, an error in `on_log` or in a
    step), `on_interrupt(state, dispatched)` receives the state after the last step dispatched and the count of steps
    this call dispatched (0: `state` is the one passed in, maybe restored from a checkpoint), then the exception goes
    on; a Ctrl-C during a step is raised once the step's result is held (`preemption.hold_sigint_in_steps`).
    """
    rows, record = _step_rows(rows, batch_size, mesh), dict(record or {}, seed=seed)
    seed_on_mesh = seed_array(seed, mesh)
    per_epoch = num_batches(len(data), batch_size)
    start = int(state.step)  # the only sync before the loop
    fresh, history = zero_totals(mesh), {}
    # Resumed mid-epoch: the epoch's and the log window's metric sums so far come back from the checkpoint's record,
    # so the epoch's history and the next on_log row count its steps before the interruption too.
    resumed = _on_mesh(saved_totals, mesh) if saved_totals is not None and start % per_epoch else None
    lengths = row_lengths(data) if group_by_length else None
    # The step's argument specs, taken before the first step donates the state: its programs compile ahead.
    specs, programs, validation_programs = compile_ahead.spec((state, fresh, seed_on_mesh)), {}, {}
    dispatched, warned_non_finite = 0, False

    def validated(epoch: int) -> dict:
        """Validates the params after `epoch` epochs (shown, logged, and marked done beside its checkpoint)."""
        scores = validate(state.model_params)  # the casts the state keeps
        if verbose:
            tqdm.write(f"epoch {epoch}/{epochs}: {_scores(scores, 'val_')}")
        if on_log is not None:
            on_log(dict(split="validation", step=epoch * per_epoch, epoch=float(epoch), **scores))
        if ckpt is not None:
            checkpoint.mark_validated(ckpt, epoch * per_epoch)
        return scores

    try:
        # SIGTERM is caught only where there is a checkpoint to save; otherwise it ends the process as usual.
        with (
            watch_sigterm() if ckpt is not None else contextlib.nullcontext(Preemption()) as preemption,
            hold_sigint_in_steps(stop_first=ckpt is not None) as interrupts,
        ):
            if ckpt is not None and start == 0:
                checkpoint.mark_validated(ckpt, None)  # a new run: its validations are recorded from here on
            done = checkpoint.validated_steps(ckpt) if ckpt is not None and start % per_epoch == 0 else None
            if validate is not None and done is not None and start and start not in done:
                validated(start // per_epoch)  # the run was killed while validating: its scores come first
                _stop_if_asked(preemption, interrupts)
            for epoch in range(start // per_epoch, epochs):
                order, began = epoch_order(len(data), seed, epoch, shuffle, lengths, batch_size), time.perf_counter()
                totals, window_began = (resumed if resumed and epoch == start // per_epoch else fresh), began
                # Rows the resumed window counted before the interruption: not trained in this process's time.
                earlier = float(saved_totals["window"]["count"]) if totals is resumed else 0.0
                first = start - epoch * per_epoch if epoch == start // per_epoch else 0
                programs = _train_programs(train_fn, specs, data, order, first, batch_size, rows, bucket, mesh)
                if compile_validation is not None and not validation_programs:
                    validation_programs = compile_validation(specs[0].model_params)
                bar = tqdm(total=per_epoch, initial=first, desc=f"epoch {epoch + 1}/{epochs}", unit="step",
                           disable=verbose != 1, dynamic_ncols=True)  # fmt: skip
                pending = _Pending()  # the running totals the bar shows once the device has them
                fed = (_feed(make_batch(data, order[i * batch_size : (i + 1) * batch_size], rows, bucket), mesh)
                       for i in range(first, per_epoch))  # fmt: skip
                with contextlib.closing(prefetch(fed)) as batches:
                    for i, batch in zip(range(first, per_epoch), batches, strict=True):
                        compile_ahead.wait(programs, batch["inputs"]["token_ids"].shape[1])
                        with interrupts.step():  # a Ctrl-C now would lose the donated state: it waits
                            state, totals = train_fn(state, totals, batch, seed_on_mesh)
                        dispatched += 1
                        step = epoch * per_epoch + i + 1
                        if on_log is not None and log_every and (step % log_every == 0 or i + 1 == per_epoch):
                            now = time.perf_counter()
                            on_log(_train_row(step, step / per_epoch, totals["window"], now - window_began, earlier))
                            totals, window_began, earlier = dict(totals, window=fresh["window"]), now, 0.0
                        due = pending.after(totals["epoch"], i + 1, per_epoch) if verbose == 1 else None
                        if due is not None:
                            sums, at = due
                            _show(bar, sums, (at - first) * batch_size / (time.perf_counter() - began))
                        bar.update(1)
                        # Preempted at the epoch's last step, the epoch still ends below (checkpoint, validation): a
                        # checkpoint there would resume past the epoch's end work and never do it.
                        stop = (preemption.requested or interrupts.requested) and i + 1 < per_epoch
                        if ckpt is not None and ((ckpt_every and step % ckpt_every == 0) or stop):
                            position = dict(step=step, epoch=epoch, batch=i + 1, totals=jax.device_get(totals))
                            checkpoint.save(ckpt, step, state.saved(), dict(record, **_json_ready(position)))
                        if stop:
                            bar.close()
                            _stop_if_asked(preemption, interrupts)
                bar.close()
                summary = steps.summarize(jax.device_get(totals["epoch"]))
                if not np.isfinite(summary["loss"]) and not warned_non_finite:
                    warned_non_finite = True
                    warnings.warn(_non_finite_loss(epoch + 1, summary["loss"], state.params), RuntimeWarning,
                                  stacklevel=warning_stacklevel(3))  # fmt: skip
                for key, value in summary.items():
                    history.setdefault(key, []).append(value)
                if verbose == 2:  # Keras' one line per epoch
                    seconds = time.perf_counter() - began
                    tqdm.write(f"epoch {epoch + 1}/{epochs}: {_scores(summary)} - {seconds:.1f} s")
                if ckpt is not None:
                    end = (epoch + 1) * per_epoch
                    checkpoint.save(ckpt, end, state.saved(), dict(record, step=end, epoch=epoch + 1, batch=0))
                if validate is not None:
                    for key, value in validated(epoch + 1).items():
                        history.setdefault(f"val_{key}", []).append(value)
                # asked during the epoch's last step or its validation: the epoch is saved
                _stop_if_asked(preemption, interrupts)
    except BaseException as error:
        compile_ahead.cancel({**programs, **validation_programs}, cause=error)
        if on_interrupt is not None:
            on_interrupt(state, dispatched)
        raise
    return state, history


def _non_finite_loss(epoch: int, loss: float, params) -> str:
    """What a non-finite training loss of `epoch` means for `params`, which are looked at (once a fit) rather than
    assumed ruined: an optimizer may skip the updates whose gradients were not finite (`optax.apply_if_finite`)."""
    if bool(_all_finite(params)):
        return (
            f"the training loss of epoch {epoch} is {loss}, but the params are still finite numbers (the optimizer "
            "skipped the steps whose gradients were not, as optax.apply_if_finite does, or only the loss overflowed): "
            "check the data, the sample weights and the loss for what is not finite."
        )
    return (
        f"the training loss of epoch {epoch} is {loss}: a step's gradients were not finite, so the params no longer "
        "are either. Lower the learning rate (and check that it and the loss are finite numbers), then train again "
        "from the params you had."
    )


@jax.jit
def _all_finite(params) -> jax.Array:
    return jnp.all(jnp.stack([jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(params)]))


def _stop_if_asked(preemption: Preemption, interrupts) -> None:
    """After a checkpoint: SIGTERM exits with status 0 (a preempted job ends cleanly), a first Ctrl-C raises the
    KeyboardInterrupt it held back."""
    if preemption.requested:
        raise SystemExit(0)
    if interrupts.requested:
        raise KeyboardInterrupt


def _json_ready(tree):
    """Host numbers (numpy float32 scalars) as Python floats, which JSON writes and reads back exactly."""
    return jax.tree.map(lambda v: v.item() if isinstance(v, np.generic | np.ndarray) else v, tree)


def _on_mesh(totals: dict, mesh) -> dict:
    """Metric totals read back from a checkpoint's record (JSON floats), as the train step's replicated float32s.

    Only the sums a step now returns: a checkpoint written while accuracy was weighted also holds a `weight_sum`."""
    names = steps.zero_sums()
    return {
        name: jax.device_put({k: np.float32(sums[k]) for k in names}, replicated(mesh)) for name, sums in totals.items()
    }


def _train_row(step: int, epoch: float, sums, seconds: float, earlier: float = 0.0) -> dict:
    """Loss and accuracy over the steps since the last row, and their examples/s (one host sync).

    `earlier`: rows in `sums` trained before `seconds` began (by the interrupted run a resumed window continues)."""
    sums = jax.device_get(sums)
    rate = (float(sums["count"]) - earlier) / max(seconds, 1e-9)
    return dict(split="train", step=step, epoch=round(epoch, 4), **steps.summarize(sums), examples_per_second=rate)


def _scores(scores: dict, prefix: str = "") -> str:
    """`loss: 0.1234 - accuracy: 0.5678`, as Keras prints its metrics."""
    return " - ".join(f"{prefix}{key}: {value:.4f}" for key, value in scores.items())


def _ready(sums) -> bool:
    """Whether the device has computed `sums` (a check that does not wait)."""
    return all(leaf.is_ready() for leaf in jax.tree.leaves(sums))


class _Pending:
    """The running totals a bar shows, without waiting for the device. Every 10 steps it keeps a reference to them
    (the steps do not donate them) and hands them out once computed: reading them at once made the host wait for the
    device every 10 steps, and the device then idled while the host dispatched the next step (issue 7: no host syncs
    in the loop). The last step's are handed out as they come: the loop's end reads them anyway."""

    def __init__(self):
        self.kept = None  # (totals, the step they count to)

    def after(self, sums, step: int, last: int):
        """After step `step` (1-based) of `last`: the (totals, step) to show now, or None."""
        if step % 10 == 0 or step == last:
            self.kept = sums, step
        if self.kept is None or not (step == last or _ready(self.kept[0])):
            return None
        due, self.kept = self.kept, None
        return due


def _show(bar, sums, examples_per_second):
    shown = steps.summarize(jax.device_get(sums))
    bar.set_postfix(loss=f"{shown['loss']:.4f}", accuracy=f"{shown['accuracy']:.4f}",
                    ex_s=f"{examples_per_second:,.0f}", refresh=False)  # fmt: skip


def _inference_order(data: ArrayData, bucket: bool) -> np.ndarray:
    """The rows in the order evaluate and predict visit them: bucketed, longest first, so each batch pads only as
    far as its rows (their results do not depend on which rows share a batch)."""
    return longest_first(data) if bucket else np.arange(len(data))


def _batches(data: ArrayData, order, batch_size: int, rows: int, bucket: bool):
    """(row indices, batch) over every example, in `order`."""
    for i in range(num_batches(len(data), batch_size)):
        indices = order[i * batch_size : (i + 1) * batch_size]
        yield indices, make_batch(data, indices, rows, bucket)


def _threads(mesh, data: ArrayData, batch_size: int) -> int:
    """The host threads an evaluate or predict runs its steps from: no more than it has batches (a one-batch call,
    a service's single request, started and joined a thread pool for nothing: ~1 ms of its ~3)."""
    return min(host_threads(mesh), num_batches(len(data), batch_size))


def _progress(data: ArrayData, batch_size: int, desc: str, verbose: int):
    """evaluate's and predict's bar (`verbose=1`), counting steps as their results arrive."""
    return tqdm(total=num_batches(len(data), batch_size), desc=desc, unit="step", disable=verbose != 1,
                dynamic_ncols=True)  # fmt: skip


def compile_evaluate_ahead(params, eval_fn, data: ArrayData, *, batch_size: int, mesh, rows=None,
                           bucket: bool = False) -> dict:  # fmt: skip
    """Starts compiling the programs `evaluate` with these arguments will run (`params` may be specs); returns their
    futures (`compile_ahead.compile_ahead`). A fit starts its validation's this way, before its first step."""
    rows, order = _step_rows(rows, batch_size, mesh), _inference_order(data, bucket)
    head = compile_ahead.spec((params, device_zero_sums(mesh)))
    return _compile_for_batches(eval_fn, data, order, batch_size, rows, bucket, mesh, lambda b: (*head, b))


def evaluate(params, eval_fn, data: ArrayData, *, batch_size: int, mesh, rows=None, bucket: bool = False,
             verbose: int = 1, params_spec=None):  # fmt: skip
    """Loss and accuracy over every example (the padded last batch is masked, so the numbers are exact).
    `params_spec`: `compile_ahead.spec(params)` where the caller keeps it (by default built here).

    On one thread the totals are carried from step to step on the device. On several (`concurrent_steps`), each step
    starts from zeros and the host adds its totals in batch order, the same float32 adds in the same order: the
    same numbers.
    """
    rows, order = _step_rows(rows, batch_size, mesh), _inference_order(data, bucket)
    programs = compile_evaluate_ahead(params if params_spec is None else params_spec, eval_fn, data,
                                      batch_size=batch_size, mesh=mesh, rows=rows, bucket=bucket)  # fmt: skip
    batches = (_feed(batch, mesh) for _, batch in _batches(data, order, batch_size, rows, bucket))
    threads, began = _threads(mesh, data, batch_size), time.perf_counter()
    try:
        with _progress(data, batch_size, "evaluate", verbose) as bar:
            if threads == 1:
                sums, pending = device_zero_sums(mesh), _Pending()
                for i, batch in enumerate(batches):
                    compile_ahead.wait(programs, batch["inputs"]["token_ids"].shape[1])
                    sums = eval_fn(params, sums, batch)
                    due = pending.after(sums, i + 1, bar.total) if verbose == 1 else None
                    if due is not None:
                        bar.set_postfix_str(_scores(steps.summarize(jax.device_get(due[0]))), refresh=False)
                    bar.update(1)
                scores = steps.summarize(jax.device_get(sums))
            else:
                zeros, sums = device_zero_sums(mesh), steps.zero_sums()

                def step(batch):
                    compile_ahead.wait(programs, batch["inputs"]["token_ids"].shape[1])
                    return jax.device_get(eval_fn(params, zeros, batch))

                for batch_sums in in_order(step, batches, threads=threads, ahead=_IN_FLIGHT):
                    sums = jax.tree.map(np.add, sums, batch_sums)
                    if verbose == 1:
                        bar.set_postfix_str(_scores(steps.summarize(sums)), refresh=False)
                    bar.update(1)
                scores = steps.summarize(sums)
    except BaseException as error:  # cut short: the programs not yet begun are not needed
        compile_ahead.cancel(programs, cause=error)
        raise
    if verbose == 2:  # Keras' one line
        tqdm.write(f"evaluate: {_scores(scores)} - {time.perf_counter() - began:.1f} s")
    return scores


def predict(params, predict_fn, data: ArrayData, *, batch_size: int, mesh, rows=None, bucket: bool = False,
            verbose: int = 1, params_spec=None):  # fmt: skip
    """Model outputs for every example as one numpy array, in input order. `params_spec`: as `evaluate`'s.

    Up to `_IN_FLIGHT` steps run ahead of the one the host waits for (`concurrent_steps.in_order`: on CPU from
    several threads at once), so the device computes while the host builds the next batches. Outputs stay on the
    device until the end. With `bucket`, the examples are computed longest first and put back in input order.
    """
    rows, order = _step_rows(rows, batch_size, mesh), _inference_order(data, bucket)
    head = compile_ahead.spec(params) if params_spec is None else params_spec
    programs = _compile_for_batches(predict_fn, data, order, batch_size, rows, bucket, mesh,
                                    lambda batch: (head, batch["inputs"]))  # fmt: skip
    batches = _batches(data, order, batch_size, rows, bucket)
    fed = ((indices, _feed(batch["inputs"], mesh)) for indices, batch in batches)
    began = time.perf_counter()

    def step(item):
        indices, inputs = item
        compile_ahead.wait(programs, inputs["token_ids"].shape[1])
        return indices, predict_fn(params, inputs)

    try:
        with _progress(data, batch_size, "predict", verbose) as bar:
            outputs = []
            for output in in_order(step, fed, threads=_threads(mesh, data, batch_size), ahead=_IN_FLIGHT):
                outputs.append(output)
                bar.update(1)
    except BaseException as error:  # cut short: the programs not yet begun are not needed
        compile_ahead.cancel(programs, cause=error)
        raise
    computed = np.concatenate([to_host(out)[: len(indices)] for indices, out in outputs])
    result = np.empty_like(computed)
    result[np.concatenate([indices for indices, _ in outputs])] = computed
    if verbose == 2:  # Keras' one line
        tqdm.write(f"predict: {len(data):,} examples - {time.perf_counter() - began:.1f} s")
    return result
