"""The optimizer recipes: keras_default is Keras' own Adam, and the recommended schedule's warmup and decay."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flaxbert.training import optimizers
from flaxbert.training.keras_adam import KerasAdamState, keras_adam


def _gradients(steps: int, seed: int = 0) -> list[dict]:
    """BERT-like ~1e-5 gradients for one param and ~1 for another, some exactly 0 (a token absent from the batch)."""
    rng = np.random.default_rng(seed)
    grads = []
    for _ in range(steps):
        small = (1e-5 * rng.normal(size=(24, 7))).astype(np.float32)
        small[:3] = 0.0
        grads.append({"embedding": small, "bias": rng.normal(size=(5,)).astype(np.float32)})
    return grads


def test_keras_default_moves_params_as_keras_adam_does(keras):
    """Keras' own Adam is the reference, on the same gradients for 6 steps. The old keras_default, optax.adam with
    eps=1e-7 (added after bias correction), put the ~1e-5-gradient params' first update 58% off Keras'."""
    rng = np.random.default_rng(1)
    start = {"embedding": (0.02 * rng.normal(size=(24, 7))).astype(np.float32), "bias": np.zeros(5, np.float32)}
    grads = _gradients(6)
    variables = {name: keras.Variable(value) for name, value in start.items()}
    reference = keras.optimizers.Adam(5e-5)
    tx = optimizers.keras_default()

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params, state = jax.tree.map(jnp.asarray, start), tx.init(start)
    eager_params, eager_state = params, state
    for g in grads:
        reference.apply_gradients([(jnp.asarray(g[name]), variables[name]) for name in start])
        params, state = step(params, state, g)
        updates, eager_state = tx.update(g, eager_state, eager_params)
        eager_params = optax.apply_updates(eager_params, updates)
        for name, variable in variables.items():
            # Keras runs its ops one at a time; the jitted step fuses them (1 ulp at most per op).
            np.testing.assert_allclose(params[name], variable.value, rtol=1e-6, atol=1e-12, err_msg=name)
            np.testing.assert_array_equal(eager_params[name], variable.value, err_msg=name)  # op by op: Keras' bits
    assert int(state.count) == int(eager_state.count) == int(reference.iterations) == 6


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jitted"])
def test_keras_adam_takes_the_step_size_in_the_moved_moments_dtype(jit):
    """float32 gradients move a bfloat16 param's moments into float32, and Keras' step size is computed there: in
    bfloat16, b2 = 0.999 rounds to 1, and the first update would be exactly 0."""
    params = {"w": jnp.asarray([0.3, -1.2, 0.7], jnp.bfloat16), "b": jnp.zeros(2, jnp.float32)}
    grads = {"w": jnp.asarray([1e-3, -2e-3, 5e-4], jnp.float32), "b": jnp.asarray([1e-3, -1e-3], jnp.float32)}
    tx = keras_adam(1e-2)
    updates, state = (jax.jit(tx.update) if jit else tx.update)(grads, tx.init(params))
    assert state.mu["w"].dtype == updates["w"].dtype == jnp.float32
    # Adam's first step is lr * g / (|g| + eps / sqrt(1 - b2)): ~lr against the gradient's sign
    np.testing.assert_allclose(updates["w"], [-0.00996839, 0.00998414, -0.00993705], rtol=1e-5)
    np.testing.assert_allclose(updates["b"], [-0.00996839, 0.00996839], rtol=1e-5)


def test_keras_adam_state_is_a_small_named_tuple_and_takes_a_schedule():
    tx = keras_adam(lambda count: 0.5 ** (count + 1))  # 0.5 at the first update, as Keras calls schedules
    state = tx.init({"w": jnp.zeros(3)})
    assert isinstance(state, KerasAdamState) and state.count.dtype == jnp.int32
    assert [leaf.shape for leaf in jax.tree.leaves(state)] == [(), (3,), (3,)]
    grads = {"w": jnp.array([1.0, -1.0, 0.0])}
    updates, state = tx.update(grads, state)
    # step 1: m = 0.1g, v = 0.001g^2, alpha = lr*sqrt(0.001)/0.1, so the update is lr*g/(|g| + eps/sqrt(0.001));
    # in float32, as Keras computes it, 1 - 0.999 is 1.3e-5 off.
    want = 0.5 / (1 + 1e-7 / 0.001**0.5)
    np.testing.assert_allclose(updates["w"], [-want, want, 0.0], rtol=2e-5)
    updates, _ = tx.update(grads, state)
    assert float(updates["w"][0]) == pytest.approx(-0.25 / (1 + 1e-7 / (1 - 0.999**2) ** 0.5), rel=2e-5)  # lr 0.25


@pytest.mark.parametrize(("name", "value"), [("b1", 1.0), ("b2", -0.1), ("eps", 0.0)])
def test_keras_adam_rejects_bad_hyperparameters(name, value):
    with pytest.raises(ValueError, match=f"keras_adam's {name} must be"):
        keras_adam(1e-3, **{name: value})


@pytest.mark.parametrize(("b1", "b2"), [(0.0, 0.999), (0.9, 0.0)])
def test_keras_adam_takes_the_ends_of_the_ranges_keras_takes(keras, b1, b2):
    """b1 = 0 (no momentum) and b2 = 0 are in Keras' ranges: its Adam runs them, and so does keras_adam, bit for bit."""
    start = np.asarray([0.3, -1.2, 0.7], np.float32)
    variable, reference = keras.Variable(start), keras.optimizers.Adam(1e-2, beta_1=b1, beta_2=b2)
    tx = keras_adam(1e-2, b1=b1, b2=b2)
    params, state = {"w": jnp.asarray(start)}, tx.init({"w": start})
    for g in ([1e-3, -2e-3, 5e-4], [-1e-3, 4e-3, 0.0], [2e-3, 1e-3, -5e-4]):
        g = jnp.asarray(g, jnp.float32)
        reference.apply_gradients([(g, variable)])
        updates, state = tx.update({"w": g}, state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_array_equal(params["w"], variable.value)


def test_warmup_then_linear_decay_keeps_its_values():
    schedule = optimizers.warmup_linear_decay(num_steps=10, learning_rate=1.0, warmup_fraction=0.2)
    got = [float(schedule(step)) for step in (0, 1, 2, 3, 6, 9, 10)]
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 7 / 8, 4 / 8, 1 / 8, 0.0], atol=1e-7)
    # int(15 * 0.1) = 1 warmup step, rounded down as documented (rounding would warm up for 2)
    schedule = optimizers.warmup_linear_decay(num_steps=15, learning_rate=1.0, warmup_fraction=0.1)
    got = [float(schedule(step)) for step in (0, 1, 2, 8, 15)]
    np.testing.assert_allclose(got, [0.0, 1.0, 13 / 14, 7 / 14, 0.0], atol=1e-7)


@pytest.mark.parametrize(
    ("num_steps", "warmup_fraction", "want"),
    [(4, 0.0, [1.0, 0.75, 0.5, 0.25]), (1, 0.0, [1.0]), (1, 0.1, [1.0]), (5, 0.1, [1.0, 0.8, 0.6, 0.4, 0.2])],
)
def test_no_warmup_starts_at_the_full_rate(num_steps, warmup_fraction, want):
    """A warmup of 0 steps (none asked for, or fewer steps than one needs) was 1 step at rate 0: the first update
    did nothing, and recommended(num_steps=1) never trained."""
    schedule = optimizers.warmup_linear_decay(num_steps, 1.0, warmup_fraction)
    np.testing.assert_allclose([float(schedule(step)) for step in range(num_steps)], want, atol=1e-7)
    tx = optimizers.recommended(num_steps, learning_rate=1e-2, warmup_fraction=warmup_fraction, weight_decay=0.0)
    params = {"kernel": jnp.ones(3)}
    updates, _ = tx.update({"kernel": jnp.array([0.5, -0.5, 0.0])}, tx.init(params), params)
    # AdamW's first step moves each param by the rate (sign of the clipped gradient), 0 where the gradient is 0
    np.testing.assert_allclose(updates["kernel"], [-1e-2, 1e-2, 0.0], rtol=1e-4)


def test_recommended_moves_params_as_torch_adamw_with_transformers_linear_warmup():
    """The recommended recipe, against the one transformers users run: `clip_grad_norm_(1.0)`, then torch's AdamW
    (eps 1e-6, decay 0.01 on kernels and embeddings only) stepped by `get_linear_schedule_with_warmup`. Gradients
    above and below the clip norm, 10 steps with 2 of warmup; every param agrees to float32 rounding at every step."""
    import torch
    import transformers

    rng = np.random.default_rng(3)
    start = {"dense": {"kernel": rng.normal(size=(4, 3)), "bias": rng.normal(size=3)},
             "norm": {"scale": 1 + 0.1 * rng.normal(size=3)}, "embedding": rng.normal(size=(5, 2))}  # fmt: skip
    start = jax.tree.map(lambda a: a.astype(np.float32), start)
    # global norms between ~0.1 and ~6: clipping bites on some steps only
    grads = [jax.tree.map(lambda a, s=scale: (s * rng.normal(size=a.shape)).astype(np.float32), start)
             for scale in (0.03, 1.5, 0.5, 0.02, 1.0, 0.01, 0.3, 2.0, 0.05, 0.8)]  # fmt: skip
    for g in grads:  # gradients down to ~1e-6 (a rare token's embedding), where Adam's epsilon counts
        g["embedding"] *= 1e-4
    num_steps, learning_rate = len(grads), 0.05

    tx = optimizers.recommended(num_steps, learning_rate=learning_rate, warmup_fraction=0.2)
    update = jax.jit(tx.update)
    params, state = start, tx.init(start)
    ours = []
    for g in grads:
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
        ours.append(params)

    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(start)[0]]
    tensors = [torch.tensor(np.array(a), requires_grad=True) for a in jax.tree.leaves(start)]
    decayed = jax.tree.leaves(optimizers.weight_decay_mask(start))
    assert [path for path, d in zip(paths, decayed, strict=True) if d] == ["['dense']['kernel']", "['embedding']"]
    reference = torch.optim.AdamW(
        [{"params": [t for t, d in zip(tensors, decayed, strict=True) if d], "weight_decay": 0.01},
         {"params": [t for t, d in zip(tensors, decayed, strict=True) if not d], "weight_decay": 0.0}],
        lr=learning_rate, betas=(0.9, 0.999), eps=1e-6,
    )  # fmt: skip
    schedule = transformers.get_linear_schedule_with_warmup(reference, 2, num_steps)
    for step, g in enumerate(grads):
        for t, value in zip(tensors, jax.tree.leaves(g), strict=True):
            t.grad = torch.tensor(np.array(value))
        torch.nn.utils.clip_grad_norm_(tensors, 1.0)
        reference.step()
        schedule.step()
        for path, t, value in zip(paths, tensors, jax.tree.leaves(ours[step]), strict=True):
            np.testing.assert_allclose(value, t.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=f"{path}, step {step}")
    for moved, was in zip(jax.tree.leaves(ours[-1]), jax.tree.leaves(start), strict=True):  # a real run, not a no-op
        assert np.abs(moved - was).max() > 1e-2


@pytest.mark.parametrize(
    ("num_steps", "warmup_fraction", "match"),
    [(0, 0.1, "num_steps"), (10, 1.5, "warmup_fraction"), (10, -0.1, "warmup_fraction")],
)
def test_schedule_rejects_bad_arguments(num_steps, warmup_fraction, match):
    with pytest.raises(ValueError, match=match):
        optimizers.warmup_linear_decay(num_steps, 1e-3, warmup_fraction)


@pytest.mark.parametrize(
    "params",
    [{}, {"a": None, "b": np.ones(3, np.float32)}, ({"x": np.ones(2, np.float32)}, [np.ones(1, np.float32)])],
    ids=["empty", "none_leaf", "tuple_and_list"],
)
def test_keras_adam_keeps_any_trees_structure(params):
    tx = keras_adam(1e-3)
    grads = jax.tree.map(lambda p: 1e-3 * p, params)
    for update in (tx.update, jax.jit(tx.update)):
        updates, state = update(grads, tx.init(params))
        assert jax.tree.structure(updates) == jax.tree.structure(state.mu) == jax.tree.structure(params)
        for leaf in jax.tree.leaves(updates):  # Adam's first step: ~lr against the gradient
            np.testing.assert_allclose(leaf, -0.00099684, rtol=1e-5)


def test_keras_adam_under_inject_hyperparams_moves_params_as_itself():
    """optax.inject_hyperparams calls the factory again with traced b1, b2 and eps: the range checks failed there
    (TracerBoolConversionError), so the default optimizer could not have its learning rate logged or changed."""
    params = {"w": jnp.array([0.5, -1.0, 2.0])}
    grads = {"w": jnp.array([1e-5, -2e-5, 0.0])}
    injected = optax.inject_hyperparams(keras_adam)(learning_rate=1e-2)
    plain = keras_adam(1e-2)
    got, _ = jax.jit(injected.update)(grads, injected.init(params))
    want, _ = plain.update(grads, plain.init(params))
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-5)  # traced b1, b2: float32 powers computed in jit


def test_adafactor_trains_on_any_mesh_with_its_factored_moments_replicated():
    """Adafactor keeps a row and a column vector per weight matrix, which inherit the matrix's two logical axes: the
    fit was refused ("only valid for values of rank at least 2"), and on an fsdp mesh a vector's (1,)-shaped
    placeholders could not be split 4 ways. They are replicated now, and the same fit on a data-parallel and on an
    fsdp mesh trains the same params."""
    import optax

    import flaxbert

    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(5, 60, (16, 8)), "segment_ids": np.zeros((16, 8), int),
         "padding_mask": np.ones((16, 8), int)}  # fmt: skip
    y = rng.integers(0, 2, 16)
    trained = []
    for mesh in [(8, 1), (2, 4)]:
        backbone = flaxbert.BertBackbone(64, 1, 2, 16, 32, max_sequence_length=8, seed=0)
        classifier = flaxbert.BertTextClassifier(backbone, num_classes=2, seed=0)
        classifier.compile(optimizer=optax.adafactor(1e-2), mesh=mesh)
        before = jax.tree.map(np.array, classifier.params)
        history = classifier.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=0)
        assert np.isfinite(history.history["loss"]).all()
        trained.append(jax.tree.map(np.array, classifier.params))
        assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, before, trained[-1])))
    # Adafactor's RMS-normalized updates amplify the meshes' different reduction orders: the same two fits differ
    # by up to 2.8e-5 (with optax.adam by 1.6e-6), against updates of ~1e-2.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4), *trained)


def test_an_optimizer_whose_state_holds_a_prng_key_fits_and_resumes_exactly(tmp_path):
    """`optax.noisy_sgd` keeps a typed PRNG key in its state: the fit's programs are compiled ahead from the state's
    spec (a key array has no weak type), and a checkpoint stores the key as its uint32 words, which the resumed run
    wraps back into a key. A run resumed after its first epoch ends with the params of one that ran through."""
    import warnings

    import flaxbert

    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(0, 50, (32, 8)), "segment_ids": np.zeros((32, 8), int),
         "padding_mask": np.ones((32, 8), int)}  # fmt: skip
    y = rng.integers(0, 2, 32)

    def classifier():
        backbone = flaxbert.BertBackbone(50, 1, 2, 16, 24, max_sequence_length=16, seed=0)
        model = flaxbert.BertTextClassifier(backbone, num_classes=2, seed=0)
        with warnings.catch_warnings():  # optax asks for an explicit key in later versions
            warnings.simplefilter("ignore")
            model.compile(optimizer=optax.noisy_sgd(0.1, seed=3))
        return model

    through = classifier()
    whole = through.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=0).history["loss"]
    classifier().fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0, checkpoint_dir=tmp_path)
    resumed = classifier()
    rest = resumed.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=0, checkpoint_dir=tmp_path).history["loss"]
    assert rest == whole[1:]  # the second epoch only, the same loss
    for a, b in zip(jax.tree.leaves(through.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(jax.tree.leaves(through.params)[0], jax.tree.leaves(classifier().params)[0])
