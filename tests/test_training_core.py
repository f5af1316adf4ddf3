"""The functional training core on 8 fake CPU devices: mesh invariance, golden shardings, exact padded metrics."""

from functools import partial

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from flaxbert.models import BertClassifier, BertConfig, BertHeadConfig
from flaxbert.models.abstract import dummy_inputs
from flaxbert.parallel import make_mesh
from flaxbert.text.bucketing import bucket_length
from flaxbert.training import loops, optimizers, programs, steps
from flaxbert.training.batches import GROUP_WINDOW, ArrayData, epoch_order, longest_first, make_batch, num_batches
from flaxbert.training.state import TrainState
from flaxbert.training.steps import sparse_categorical_crossentropy

CFG = BertConfig(
    vocabulary_size=97, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=24
)
MODEL = BertClassifier(CFG, BertHeadConfig(num_classes=3))


def _data(n=37, length=12, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, length + 1, n)
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    inputs = {
        "token_ids": rng.integers(1, 97, (n, length)) * mask,
        "segment_ids": np.zeros((n, length), int),
        "padding_mask": mask,
    }
    return ArrayData({k: v.astype(np.int32) for k, v in inputs.items()}, rng.integers(0, 3, n).astype(np.int32))


def _params():
    import flax.linen as nn

    return nn.unbox(MODEL.init(jax.random.key(0), dummy_inputs(CFG))["params"])


def test_a_mesh_is_laid_over_the_devices_it_is_given():
    """Not the first devices of the host: a job that gives half its devices to another model gets the other half."""
    devices = jax.devices()[4:8]
    mesh = make_mesh(2, 2, devices=devices)
    assert set(mesh.devices.flat) == set(devices) and dict(mesh.shape) == {"data": 2, "fsdp": 2}


def _train(mesh_shape, tx, steps=3, batch_size=8):
    devices = jax.devices()[: mesh_shape[0] * mesh_shape[1]]
    mesh = make_mesh(*mesh_shape, devices=devices)
    _, shardings = programs.state_shardings(MODEL, CFG, tx, mesh)
    state = programs.create_state(_params(), tx, shardings)
    train = programs.jit_train_step(MODEL, mesh, shardings, loss_fn=sparse_categorical_crossentropy)
    data = _data(n=steps * batch_size)
    state, history = loops.fit(
        state, train, data, batch_size=batch_size, epochs=1, seed=0, shuffle=True, mesh=mesh, verbose=0
    )
    return state, shardings, mesh


@pytest.fixture(scope="module")
def one_device_sgd():
    # SGD, not Adam: Adam's normalisation amplifies reduction-order noise on tiny gradients.
    return _train((1, 1), optax.sgd(0.5))[0]


@pytest.mark.parametrize("mesh_shape", [(8, 1), (1, 8), (2, 4)])
def test_three_sgd_steps_are_mesh_invariant(mesh_shape, one_device_sgd):
    reference = one_device_sgd
    state, _, _ = _train(mesh_shape, optax.sgd(0.5))
    assert int(state.step) == 3
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), reference.params, _params())
    assert max(jax.tree.leaves(moved)) > 1e-3  # the steps really changed the params
    diff = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), reference.params, state.params)
    assert max(jax.tree.leaves(diff)) <= 1e-5


def test_param_shardings_follow_the_rules():
    state, shardings, mesh = _train((2, 4), optimizers.keras_default(), steps=1)
    layer = state.params["backbone"]["transformer_layer_0"]
    assert layer["self_attention"]["query"]["kernel"].sharding.spec == P("fsdp", None, None)
    assert layer["self_attention"]["output"]["kernel"].sharding.spec == P(None, None, "fsdp")
    assert layer["feedforward_output_dense"]["kernel"].sharding.spec == P(None, "fsdp")
    assert state.params["backbone"]["token_embedding"]["embedding"].sharding.spec == P(None, "fsdp")
    assert layer["self_attention_layer_norm"]["scale"].sharding.spec == P(None)
    assert state.params["logits"]["kernel"].sharding.spec == P("fsdp", None)
    # Adam's moments are sharded like their params.
    mu = state.opt_state.mu["backbone"]["transformer_layer_0"]["self_attention"]["query"]["kernel"]
    assert mu.sharding.spec == P("fsdp", None, None)
    assert layer["self_attention"]["query"]["kernel"].addressable_shards[0].data.shape == (4, 2, 8)


@pytest.mark.parametrize("mesh_shape,bucket", [((1, 1), False), ((8, 1), False), ((2, 4), False), ((1, 1), True),
                                               ((2, 4), True)])  # fmt: skip
def test_evaluate_and_predict_are_exact_with_a_padded_last_batch(mesh_shape, bucket):
    mesh = make_mesh(*mesh_shape, devices=jax.devices()[: mesh_shape[0] * mesh_shape[1]])
    _, shardings = programs.state_shardings(MODEL, CFG, optax.sgd(0.1), mesh)
    params = jax.device_put(_params(), shardings.params)
    # 37 = 4 full batches of 8 and a last batch of 5; bucketed, the rows go longest first and the shortest batches
    # are cut to 16 of the 24 columns, and predict must still return them in input order
    data = _data(n=37, length=24)
    predict = programs.jit_predict_step(MODEL, mesh, shardings.params)
    outputs = loops.predict(params, predict, data, batch_size=8, mesh=mesh, bucket=bucket, verbose=0)
    direct = np.asarray(MODEL.apply({"params": _params()}, {k: v for k, v in data.inputs.items()}))
    np.testing.assert_allclose(outputs, direct, atol=1e-5)
    evaluate = programs.jit_eval_step(MODEL, mesh, shardings.params, loss_fn=sparse_categorical_crossentropy)
    metrics = loops.evaluate(params, evaluate, data, batch_size=8, mesh=mesh, bucket=bucket, verbose=0)
    loss = optax.softmax_cross_entropy_with_integer_labels(direct, data.labels).mean()
    assert metrics["loss"] == pytest.approx(float(loss), abs=1e-5)
    assert metrics["accuracy"] == pytest.approx(float((direct.argmax(-1) == data.labels).mean()), abs=1e-7)


def test_the_loops_pad_a_batch_that_does_not_split_over_the_mesh():
    """Called directly without `rows`, a batch of 12 on 8 devices ended in jax's IndivisibleError; the loops now pad
    it to 16 weightless rows, as the classifiers do, and a `rows` that cannot work is named."""
    mesh = make_mesh(2, 4)
    _, shardings = programs.state_shardings(MODEL, CFG, optax.sgd(0.1), mesh)
    params = jax.device_put(_params(), shardings.params)
    data = _data(n=30, length=24)
    predict = programs.jit_predict_step(MODEL, mesh, shardings.params)
    outputs = loops.predict(params, predict, data, batch_size=12, mesh=mesh, verbose=0)
    np.testing.assert_allclose(outputs, loops.predict(params, predict, data, batch_size=16, mesh=mesh, verbose=0),
                               atol=1e-6)  # fmt: skip
    evaluate = programs.jit_eval_step(MODEL, mesh, shardings.params, loss_fn=sparse_categorical_crossentropy)
    assert loops.evaluate(params, evaluate, data, batch_size=12, mesh=mesh, verbose=0)["loss"] == pytest.approx(
        loops.evaluate(params, evaluate, data, batch_size=16, mesh=mesh, verbose=0)["loss"], abs=1e-6
    )
    with pytest.raises(ValueError, match=r"rows=12 must be at least batch_size=12 and a multiple of the mesh's 8"):
        loops.predict(params, predict, data, batch_size=12, rows=12, mesh=mesh, verbose=0)


def test_evaluation_order_is_longest_first_with_ties_in_input_order():
    data = _data(n=37, length=24)
    lengths = data.inputs["padding_mask"].sum(axis=1)
    order = longest_first(data)
    assert sorted(order) == list(range(37))
    assert list(zip(-lengths[order], order, strict=True)) == sorted(zip(-lengths, range(37), strict=True))
    full = data.inputs["padding_mask"].shape[1]
    widths = [bucket_length(int(lengths[order[i : i + 8]].max()), full) for i in range(0, 37, 8)]
    assert widths == [24, 24, 16, 16, 16]  # in input order every batch of these rows has one longer than 16:
    assert all(bucket_length(int(lengths[i : i + 8].max()), full) == 24 for i in range(0, 37, 8))


def test_grouping_by_length_batches_similar_rows_and_keeps_the_plain_order_otherwise():
    size, batch = 3 * GROUP_WINDOW * 8 + 13, 8  # three windows of 50 batches and a partial one
    lengths = np.random.default_rng(3).integers(2, 129, size)
    assert np.array_equal(epoch_order(size, 5, 1, True), np.random.default_rng([5, 1]).permutation(size))
    grouped = epoch_order(size, 5, 1, True, lengths, batch)
    assert sorted(grouped) == list(range(size))
    assert np.array_equal(grouped, epoch_order(size, 5, 1, True, lengths, batch))  # resumable: (seed, epoch) alone
    assert not np.array_equal(grouped, epoch_order(size, 5, 2, True, lengths, batch))
    full = size // batch * batch

    def spread(order):  # mean (longest - shortest) over full batches
        return np.ptp(lengths[order[:full]].reshape(-1, batch), axis=1).mean()

    assert spread(grouped) < 0.1 * spread(epoch_order(size, 5, 1, True))
    # Shuffled, the full batches run in random order, not each window's longest first (without the batches' shuffle,
    # the suite passed).
    longest = lengths[grouped[:full]].reshape(-1, batch).max(axis=1)
    runs = longest[: len(longest) // GROUP_WINDOW * GROUP_WINDOW].reshape(-1, GROUP_WINDOW)  # whole windows' worth
    assert not np.all(np.diff(runs, axis=1) <= 0, axis=1).any()
    plain = epoch_order(size, 5, 1, False, lengths, batch)  # no shuffle: each window sorted longest first, in place
    window = GROUP_WINDOW * batch
    for start in range(0, size, window):
        chunk = plain[start : start + window]
        assert sorted(chunk) == list(range(start, min(start + window, size)))
        assert np.all(np.diff(lengths[chunk]) <= 0)


def _reference_metrics(tx, data, batch_size, epochs, log_every, group_by_length=False):
    """Per-epoch and per-window (loss, accuracy) from the pure step's own metrics, summed on the host in float64."""
    step = jax.jit(partial(steps.train_step, model=MODEL, seed=0, loss_fn=sparse_categorical_crossentropy))
    state = TrainState.create(_params(), tx)
    per_epoch, epochs_out, windows = num_batches(len(data), batch_size), [], []

    def summary(sums):
        return sums["loss_sum"] / sums["count"], sums["correct"] / sums["count"]

    for epoch in range(epochs):
        lengths = data.inputs["padding_mask"].sum(axis=1) if group_by_length else None
        order = epoch_order(len(data), 0, epoch, True, lengths, batch_size)
        total = window = None
        for i in range(per_epoch):
            batch = make_batch(data, order[i * batch_size : (i + 1) * batch_size], batch_size)
            state, metrics = step(state, batch)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            total = metrics if total is None else {k: total[k] + v for k, v in metrics.items()}
            window = metrics if window is None else {k: window[k] + v for k, v in metrics.items()}
            at = epoch * per_epoch + i + 1
            if at % log_every == 0 or i + 1 == per_epoch:
                windows.append((at, *summary(window)))
                window = None
        epochs_out.append(summary(total))
    return epochs_out, windows


@pytest.mark.parametrize("group_by_length", [False, True])
def test_fit_history_and_log_rows_equal_the_summed_step_metrics(group_by_length):
    mesh = make_mesh(1, 1, devices=jax.devices()[:1])
    tx = optax.sgd(0.5)
    rng = np.random.default_rng(1)
    data = _data(n=37)  # batch 8: four full batches and a padded one of 5 per epoch
    data = ArrayData(data.inputs, data.labels, rng.uniform(0.5, 2.0, 37).astype(np.float32))
    _, shardings = programs.state_shardings(MODEL, CFG, tx, mesh)
    train = programs.jit_train_step(MODEL, mesh, shardings, loss_fn=sparse_categorical_crossentropy)
    rows = []
    _, history = loops.fit(programs.create_state(_params(), tx, shardings), train, data, batch_size=8, epochs=2,
                           seed=0, shuffle=True, mesh=mesh, verbose=1, log_every=3, on_log=rows.append,
                           group_by_length=group_by_length)  # fmt: skip
    epochs, windows = _reference_metrics(tx, data, batch_size=8, epochs=2, log_every=3,
                                         group_by_length=group_by_length)  # fmt: skip
    np.testing.assert_allclose(history["loss"], [loss for loss, _ in epochs], rtol=1e-6)
    np.testing.assert_allclose(history["accuracy"], [accuracy for _, accuracy in epochs], rtol=1e-6)
    assert [r["step"] for r in rows] == [at for at, _, _ in windows] == [3, 5, 6, 9, 10]
    assert [r["epoch"] for r in rows] == [0.6, 1.0, 1.2, 1.8, 2.0]  # five steps an epoch; whole epochs passed before
    np.testing.assert_allclose([r["loss"] for r in rows], [loss for _, loss, _ in windows], rtol=1e-6)
    np.testing.assert_allclose([r["accuracy"] for r in rows], [acc for _, _, acc in windows], rtol=1e-6)
    assert all(r["examples_per_second"] > 0 for r in rows)


def test_each_step_draws_its_dropout_masks_from_the_seed_and_its_step_number():
    """A step's loss is the model's with dropout keyed by `fold_in(key(seed), step)`, so each step draws new masks
    and a resumed run draws the same ones. With every step keyed as step 0 (the same masks all run), the suite
    passed: resuming was exact all the same."""
    batch = make_batch(_data(n=8), np.arange(8), 8)
    step = jax.jit(partial(steps.train_step, model=MODEL, seed=3, loss_fn=sparse_categorical_crossentropy))
    params = _params()
    state = TrainState.create(params, optax.sgd(0.0))  # rate 0: only the step number moves
    losses, want = [], []
    for number in range(3):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss_sum"] / metrics["count"]))
        key = jax.random.fold_in(jax.random.key(3), number)
        logits = MODEL.apply({"params": params}, batch["inputs"], train=True, rngs={"dropout": key})
        want.append(float(sparse_categorical_crossentropy(logits, batch["label"]).mean()))
    np.testing.assert_allclose(losses, want, rtol=1e-6)
    assert len(set(losses)) == 3, losses  # three steps, three sets of masks


def test_create_state_copies_the_params_so_donating_steps_leave_them_intact():
    mesh = make_mesh(1, 1, devices=jax.devices()[:1])
    tx = optax.sgd(0.5)
    _, shardings = programs.state_shardings(MODEL, CFG, tx, mesh)
    params = jax.device_put(_params(), shardings.params)  # already in place: nothing for device_put to move
    before = jax.tree.map(np.array, params)
    state = programs.create_state(params, tx, shardings)
    train = programs.jit_train_step(MODEL, mesh, shardings, loss_fn=sparse_categorical_crossentropy)
    batch = make_batch(_data(n=8), np.arange(8), 8)
    state, _ = train(state, programs.zero_totals(mesh), batch, programs.seed_array(0, mesh))
    assert int(state.step) == 1
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.array, params), before)  # readable, unchanged


def test_a_bucket_keeps_a_row_up_to_its_last_real_token():
    """A mask with holes (keras-hub's masks out a "[PAD]" typed in the text): the bucket holds the row up to its last
    real position, not just as many positions as the mask counts (that dropped the row's last tokens)."""
    mask = np.zeros((2, 64), np.int32)
    mask[0, :3] = 1
    mask[1, :26] = 1
    mask[1, 1:21] = 0  # 6 real positions counted, the last at 25
    data = ArrayData({"token_ids": np.arange(128).reshape(2, 64), "segment_ids": np.zeros((2, 64), np.int32),
                      "padding_mask": mask}, labels=np.zeros(2, np.int32))  # fmt: skip
    batch = make_batch(data, np.arange(2), 2, bucket=True)
    assert batch["inputs"]["padding_mask"].shape == (2, 32)  # the bucket holding 26 positions, not 6
    np.testing.assert_array_equal(batch["inputs"]["padding_mask"], mask[:, :32])
    assert longest_first(data).tolist() == [1, 0]


def test_the_functional_loops_check_the_mesh_and_consume_the_state():
    """state_shardings failed inside jax (IndivisibleError) for a hidden size the fsdp axis does not divide; and fit
    donates the state it is given (documented), so a second fit from it must fail loudly rather than train on."""
    odd = BertConfig(vocabulary_size=97, num_layers=1, num_heads=2, hidden_dim=12, intermediate_dim=16,
                     max_sequence_length=24)  # fmt: skip
    with pytest.raises(ValueError, match=r"hidden_dim=12 is not divisible by the fsdp mesh axis \(8\)"):
        model = BertClassifier(odd, BertHeadConfig(num_classes=3))
        programs.state_shardings(model, odd, optax.sgd(0.1), make_mesh(1, 8))
    mesh = make_mesh(1, 1, devices=jax.devices()[:1])
    tx = optax.sgd(0.5)
    _, shardings = programs.state_shardings(MODEL, CFG, tx, mesh)
    state = programs.create_state(_params(), tx, shardings)
    train = programs.jit_train_step(MODEL, mesh, shardings, loss_fn=sparse_categorical_crossentropy)
    loops.fit(state, train, _data(n=8), batch_size=8, epochs=1, seed=0, shuffle=False, mesh=mesh, verbose=0)
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(state.params))


def test_the_bars_show_running_scores_only_once_the_device_has_them(monkeypatch):
    """With verbose=1, fit and evaluate take the running totals every 10 steps and show them when computed, never
    waiting for the device mid-epoch (a read at once stalled the loop every 10 steps); the last step's totals are
    shown as they come, and they are the epoch's scores."""
    mesh = make_mesh(1, 1, devices=jax.devices()[:1])
    tx = optax.sgd(0.5)
    data = _data(n=8 * 25)  # 25 steps an epoch at batch 8
    _, shardings = programs.state_shardings(MODEL, CFG, tx, mesh)
    train = programs.jit_train_step(MODEL, mesh, shardings, loss_fn=sparse_categorical_crossentropy)
    asked, shown = [], []

    def ready(sums):  # a device that has each snapshot only the third time it is asked
        asked.append(id(sums))
        return asked.count(id(sums)) >= 3

    def show(bar, sums, examples_per_second):
        shown.append((bar.n, steps.summarize(jax.device_get(sums))))

    monkeypatch.setattr(loops, "_ready", ready)
    monkeypatch.setattr(loops, "_show", show)
    _, history = loops.fit(programs.create_state(_params(), tx, shardings), train, data, batch_size=8, epochs=1,
                           seed=0, shuffle=True, mesh=mesh, verbose=1)  # fmt: skip
    # totals taken after steps 10 and 20 (bar.n counts the steps before), shown 2 steps later; step 25's at once
    assert [n for n, _ in shown] == [11, 21, 24]
    assert shown[-1][1]["loss"] == pytest.approx(history["loss"][0], rel=1e-6)

    postfixes = []  # evaluate on one host thread (several read each step's sums in their own threads)
    monkeypatch.setattr(loops, "host_threads", lambda mesh: 1)
    monkeypatch.setattr(loops.tqdm, "set_postfix_str", lambda bar, text, refresh=True: postfixes.append((bar.n, text)))
    evaluate = programs.jit_eval_step(MODEL, mesh, shardings.params, loss_fn=sparse_categorical_crossentropy)
    params = programs.create_state(_params(), tx, shardings).params
    scores = loops.evaluate(params, evaluate, data, batch_size=8, mesh=mesh, verbose=1)
    assert [n for n, _ in postfixes] == [11, 21, 24]
    assert postfixes[-1][1] == loops._scores(scores)  # the last shows the scores evaluate returns


def test_the_loss_equals_keras_on_logits_and_on_probabilities_with_zeros_and_ones(keras):
    """`sparse_categorical_crossentropy` against Keras' own, on logits up to +-100 and, as a softmax head gives them,
    on probabilities where some are exactly 0 or 1 (Keras clips them to [1e-7, 1 - 1e-7]: no infinite loss)."""
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 2, 1, 0, 1])
    logits = np.concatenate([rng.normal(0, 3, (4, 3)), [[100.0, -100.0, 0.0], [-50, 60, 0], [0, 0, 0]]])
    logits = logits.astype(np.float32)
    probs = np.array(jax.nn.softmax(logits[:4], -1).tolist() + [[1, 0, 0], [0, 1, 0], [1, 0, 0]], np.float32)
    keras_loss = keras.losses.sparse_categorical_crossentropy
    for outputs, from_logits in ((logits, True), (probs, False)):
        got = np.asarray(sparse_categorical_crossentropy(outputs, labels, from_logits=from_logits))
        want = np.asarray(keras_loss(labels, outputs, from_logits=from_logits))
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
