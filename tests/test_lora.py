"""LoRA as keras-hub does it (`backbone.enable_lora`): keras-hub itself is the reference for the forward pass, the
`.lora.h5` files (both ways), what trains, a fit's numbers and the merged preset it saves."""

import jax
import numpy as np
import pytest

import flaxbert
from flaxbert.models import lora
from flaxbert.presets import lora_file
from flaxbert.training import optimizers

pytestmark = pytest.mark.filterwarnings("ignore:batch_size=4 does not split")

_SMALL = dict(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=12)
_EVERY_LAYER = ["query", "key", "value", "attention_output", "feedforward_intermediate_dense",
                "feedforward_output_dense"]  # fmt: skip


def _inputs(rows: int = 3, length: int = 7, segments: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    mask = (np.arange(length)[None, :] < rng.integers(2, length + 1, rows)[:, None]).astype("int32")
    inputs = {"token_ids": rng.integers(5, 50, (rows, length)).astype("int32"), "padding_mask": mask}
    if segments:
        inputs["segment_ids"] = np.zeros((rows, length), "int32")
    return inputs


def _trained_count(params) -> int:
    mask = lora.trained_mask(params)
    pairs = zip(jax.tree.leaves(params), jax.tree.leaves(mask), strict=True)
    return sum(leaf.size for leaf, trained in pairs if trained)


@pytest.mark.parametrize("architecture", ["bert", "distil_bert"])
def test_adapters_compute_and_are_saved_as_keras_hubs(keras_hub, keras, tmp_path, architecture):
    """Every layer keras-hub can adapt, with nonzero adapters: keras-hub's `.lora.h5` loads here and gives keras-hub's
    outputs, the file written here loads in keras-hub and gives them again (so the layer indices are Keras' own), and
    the parameter counts, trainable ones included, are keras-hub's."""
    keras.utils.set_random_seed(0)
    bert = architecture == "bert"
    keras_cls = keras_hub.models.BertBackbone if bert else keras_hub.models.DistilBertBackbone
    targets = [*_EVERY_LAYER, "pooled_dense"] if bert else _EVERY_LAYER
    reference = keras_cls(**_SMALL)
    reference.save_to_preset(str(tmp_path / "preset"))
    reference.enable_lora(3, target_layer_names=targets)
    rng = np.random.default_rng(1)
    for weight in reference.trainable_weights:
        if "lora_kernel" in weight.path:  # B starts at zero; nonzero adapters change the outputs
            weight.assign(rng.normal(0, 0.3, weight.shape).astype("float32"))
    reference.save_lora_weights(str(tmp_path / "keras.lora.h5"))
    inputs = _inputs(segments=bert)
    want = reference(inputs)
    want = np.asarray(want["sequence_output"] if bert else want)

    backbone = (flaxbert.BertBackbone if bert else flaxbert.DistilBertBackbone).from_preset(tmp_path / "preset")
    plain = np.asarray(backbone(inputs)["sequence_output"] if bert else backbone(inputs))
    backbone.load_lora_weights(tmp_path / "keras.lora.h5")  # enables LoRA with the file's rank and layers
    assert (backbone.config.lora_rank, backbone.config.lora_targets) == (3, tuple(sorted(targets)))
    got = backbone(inputs)
    np.testing.assert_allclose(got["sequence_output"] if bert else got, want, rtol=0, atol=1e-6)
    assert np.abs(plain - want).max() > 0.1  # the adapters changed what the backbone computes
    if bert:
        np.testing.assert_allclose(got["pooled_output"], reference(inputs)["pooled_output"], rtol=0, atol=1e-6)
    assert backbone.count_params() == reference.count_params()
    assert _trained_count(backbone.params) == sum(int(np.prod(w.shape)) for w in reference.trainable_weights)

    backbone.save_lora_weights(tmp_path / "flaxbert.lora.h5")
    again = keras_cls.from_preset(str(tmp_path / "preset"))
    again.enable_lora(3, target_layer_names=targets)
    again.load_lora_weights(str(tmp_path / "flaxbert.lora.h5"))
    back = again(inputs)
    np.testing.assert_array_equal(np.asarray(back["sequence_output"] if bert else back), want)


@pytest.fixture(scope="module")
def keras_lora_fit(keras_hub, keras, tmp_path_factory):
    """A keras-hub classifier without dropout, its backbone's LoRA enabled (rank 2, keras-hub's default layers) and
    fit by Keras for two epochs (batch 4, no shuffle, Adam 1e-2): the adapters it started from, its history, its
    outputs, its trainable count, its adapters after and the preset Keras saves of it."""
    keras.utils.set_random_seed(0)
    directory = tmp_path_factory.mktemp("keras_lora")
    backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=16, dropout=0.0)  # fmt: skip
    keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=3, preprocessor=None, dropout=0.0
    ).save_to_preset(str(directory / "preset"))
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(5, 50, (16, 8)).astype("int32"), "segment_ids": np.zeros((16, 8), "int32"),
         "padding_mask": np.ones((16, 8), "int32")}  # fmt: skip
    y = rng.integers(0, 3, 16)
    model = keras_hub.models.BertTextClassifier.from_preset(str(directory / "preset"))
    model.backbone.enable_lora(2)
    model.backbone.save_lora_weights(str(directory / "initial.lora.h5"))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["sparse_categorical_accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    history = keras.Model.fit(model, x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    model.backbone.save_lora_weights(str(directory / "trained.lora.h5"))
    model.save_to_preset(str(directory / "saved"))
    return dict(directory=directory, x=x, y=y, history=history, outputs=np.asarray(keras.Model.predict(model, x)),
                trainable=sum(int(np.prod(w.shape)) for w in model.trainable_weights))  # fmt: skip


@pytest.fixture(scope="module")
def lora_fit(keras_lora_fit):
    """flaxbert's classifier from the same preset and starting adapters, fit as Keras was; and its params before."""
    run = keras_lora_fit
    classifier = flaxbert.BertTextClassifier.from_preset(run["directory"] / "preset")
    classifier.backbone.load_lora_weights(run["directory"] / "initial.lora.h5")
    classifier.compile(optimizer=optimizers.keras_default(1e-2))
    before = classifier.params
    history = classifier.fit(run["x"], run["y"], batch_size=4, epochs=2, shuffle=False, verbose=0).history
    return classifier, before, history


def test_a_lora_fit_trains_what_keras_hub_trains_to_its_numbers(keras_lora_fit, lora_fit):
    """The adapters, the adapted layers' biases and the head train; every other backbone weight stays bit for bit.
    Losses, logits and the trained adapters are Keras' to float32 rounding (the fit moved the logits 0.08)."""
    classifier, before, history = lora_fit
    run = keras_lora_fit
    np.testing.assert_allclose(history["loss"], run["history"]["loss"], rtol=1e-6)
    np.testing.assert_allclose(classifier.predict(run["x"], verbose=0), run["outputs"], rtol=0, atol=1e-6)
    _, want = lora_file.read(run["directory"] / "trained.lora.h5")
    classifier.backbone.save_lora_weights(run["directory"] / "ours.lora.h5")
    _, got = lora_file.read(run["directory"] / "ours.lora.h5")
    assert sorted(got) == sorted(want)
    for index in want:
        for ours, theirs in zip(got[index], want[index], strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    after = classifier.params
    flat_before = dict(jax.tree_util.tree_flatten_with_path(before["backbone"])[0])
    mask = dict(jax.tree_util.tree_flatten_with_path(lora.trained_mask(before["backbone"]))[0])
    for path, value in jax.tree_util.tree_flatten_with_path(after["backbone"])[0]:
        moved = not np.array_equal(np.asarray(value), np.asarray(flat_before[path]))
        assert moved == mask[path], jax.tree_util.keystr(path)  # lora_kernel_b of zeros moves too: it trains
    lines = []
    classifier.summary(print_fn=lines.append)
    assert f"Trainable params: {run['trainable']:,} " in "\n".join(lines)
    assert "LoRA rank 2" in "\n".join(lines)


def test_saving_merges_the_adapters_as_keras_hub_does(keras_lora_fit, lora_fit, tmp_path):
    """save_to_preset and export_to_transformers fold each adapter into its kernel: the preset loads without LoRA
    and predicts what the classifier does, as the preset Keras saved of its LoRA model does here."""
    import torch
    import transformers

    classifier, _, _ = lora_fit
    run = keras_lora_fit
    want = classifier.predict(run["x"], verbose=0)
    classifier.save_to_preset(tmp_path / "merged")
    merged = flaxbert.BertTextClassifier.from_preset(tmp_path / "merged")
    assert merged.backbone.config.lora_rank == 0
    assert "lora" not in (tmp_path / "merged" / "config.json").read_text()  # as presets were before LoRA
    assert "lora_kernel_a" not in str(jax.tree_util.tree_structure(merged.params))
    np.testing.assert_allclose(merged.predict(run["x"], verbose=0), want, rtol=0, atol=1e-6)
    from_keras = flaxbert.BertTextClassifier.from_preset(run["directory"] / "saved")
    np.testing.assert_allclose(from_keras.predict(run["x"], verbose=0), run["outputs"], rtol=0, atol=1e-6)

    classifier.export_to_transformers(tmp_path / "hf")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        logits = hf(input_ids=torch.as_tensor(run["x"]["token_ids"], dtype=torch.long),
                    attention_mask=torch.as_tensor(run["x"]["padding_mask"], dtype=torch.long),
                    token_type_ids=torch.as_tensor(run["x"]["segment_ids"], dtype=torch.long)).logits  # fmt: skip
    # keras-hub's presets use tanh GELU, which the exported config names: transformers computes the same function
    np.testing.assert_allclose(logits.numpy(), want, rtol=0, atol=1e-5)


def test_lora_trains_alike_scanned_and_sharded_and_a_frozen_backbone_freezes_the_adapters():
    """scan_layers and an FSDP mesh (the adapters' new "lora" axis replicated) give the plain run's numbers; with
    `backbone.trainable = False` after enable_lora nothing in the backbone moves, adapters included (Keras' rule)."""
    x = _inputs(rows=16, length=8)
    y = np.arange(16) % 3
    results = {}
    for name, scan, mesh in [("plain", False, None), ("scanned, fsdp", True, (1, 8))]:
        backbone = flaxbert.BertBackbone(**_SMALL, scan_layers=scan)
        classifier = flaxbert.BertTextClassifier(backbone, num_classes=3)
        classifier.backbone.enable_lora(2, ["query", "value", "feedforward_output_dense"])
        if mesh is not None:
            classifier.compile(mesh=mesh)
        history = classifier.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=1).history
        results[name] = (history["loss"], classifier.predict(x, verbose=0))
    np.testing.assert_allclose(results["scanned, fsdp"][0], results["plain"][0], rtol=1e-6)
    np.testing.assert_allclose(results["scanned, fsdp"][1], results["plain"][1], rtol=0, atol=1e-6)
    assert np.abs(results["plain"][1][:, 0] - results["plain"][1][0, 0]).max() > 0  # it computes something

    classifier.backbone.trainable = False
    before = classifier.backbone.params
    classifier.fit(x, y, batch_size=8, verbose=0)  # the optimizer state of the LoRA fit is not continued
    jax.tree.map(np.testing.assert_array_equal, classifier.backbone.params, before)


def test_enable_lora_then_a_fit_continues_nothing_of_the_frozen_fit_before():
    """A frozen-backbone fit, then enable_lora and the backbone frozen again: the same optimizer object, but params
    with adapters, so the next fit starts a new optimizer state (the kept one's tree no longer fits them). Then
    `trainable = True` trains everything, adapters and kernels, as Keras' does."""
    classifier = flaxbert.BertTextClassifier(flaxbert.BertBackbone(**_SMALL), num_classes=2)
    x, y = _inputs(rows=4, length=6), np.array([0, 1, 0, 1])
    classifier.backbone.trainable = False
    classifier.fit(x, y, batch_size=4, verbose=0)
    classifier.backbone.enable_lora(2)
    assert classifier.backbone.trainable  # as keras-hub's enable_lora sets it
    classifier.backbone.trainable = False
    head = classifier.head_params
    classifier.fit(x, y, batch_size=4, verbose=0)
    trained = classifier.head_params["logits"]["kernel"]
    assert not np.array_equal(np.asarray(trained), np.asarray(head["logits"]["kernel"]))
    classifier.backbone.trainable = True
    before = classifier.backbone.params["transformer_layer_0"]["self_attention"]
    classifier.fit(x, y, batch_size=4, verbose=0)
    after = classifier.backbone.params["transformer_layer_0"]["self_attention"]
    for name in ("kernel", "lora_kernel_b"):  # (a's gradient is b's transpose times the kernel's: b was zero)
        assert not np.array_equal(np.asarray(after["query"][name]), np.asarray(before["query"][name])), name
    assert not np.array_equal(np.asarray(after["key"]["kernel"]), np.asarray(before["key"]["kernel"]))


def test_a_lora_run_resumes_as_it_began_and_a_run_without_lora_is_refused_its_checkpoints(tmp_path):
    x, y = _inputs(rows=8, length=6), np.arange(8) % 2

    def classifier(rank):
        made = flaxbert.BertTextClassifier(flaxbert.BertBackbone(**_SMALL), num_classes=2)
        if rank:
            made.backbone.enable_lora(rank)
        return made

    straight = classifier(2)
    straight.fit(x, y, batch_size=4, epochs=2, verbose=0, seed=3)
    resumed = classifier(2)
    resumed.fit(x, y, batch_size=4, epochs=1, verbose=0, seed=3, checkpoint_dir=tmp_path / "run")
    resumed = classifier(2)
    resumed.fit(x, y, batch_size=4, epochs=2, verbose=0, seed=3, checkpoint_dir=tmp_path / "run")
    np.testing.assert_array_equal(resumed.predict(x, verbose=0), straight.predict(x, verbose=0))
    with pytest.raises(ValueError, match=r"model backbone.lora_rank': \(2, None\)"):
        classifier(0).fit(x, y, batch_size=4, epochs=2, verbose=0, seed=3, checkpoint_dir=tmp_path / "run")
    with pytest.raises(ValueError, match=r"model backbone.lora_rank': \(2, 4\)"):
        classifier(4).fit(x, y, batch_size=4, epochs=2, verbose=0, seed=3, checkpoint_dir=tmp_path / "run")


def _unchanged(backbone, call):
    """`call()` refused, the backbone as it was (its config and its very params)."""
    config, leaves = backbone.config, jax.tree.leaves(backbone.params)
    call()
    assert backbone.config == config
    assert all(a is b for a, b in zip(jax.tree.leaves(backbone.params), leaves, strict=True))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b: b.enable_lora(0), r"enable_lora\(rank=0\): the rank must be a positive integer"),
        (lambda b: b.enable_lora(2.5), r"rank=2.5\): the rank must be a positive integer"),
        (lambda b: b.enable_lora(True), r"rank=True\): the rank must be a positive integer"),
        (lambda b: b.enable_lora(2, "query"), r"target_layer_names must be a non-empty list .* got 'query'"),
        (lambda b: b.enable_lora(2, []), r"target_layer_names must be a non-empty list"),
        (
            lambda b: b.enable_lora(2, ["quer"]),
            r"'quer' is not a layer LoRA adapts in a Bert backbone \(closest: \['qu",
        ),
        (lambda b: b.enable_lora(2, ["query", "query"]), r"name a layer twice"),
        (lambda b: b.enable_lora(2, [1]), r"target_layer_names must be a non-empty list of layer names, .* got \[1\]"),
        (lambda b: b.save_lora_weights("x.lora.h5"), r"no LoRA adapters to save; call backbone.enable_lora"),
    ],
)
def test_enable_lora_refuses_what_keras_hub_would_get_wrong_and_changes_nothing(call, message):
    backbone = flaxbert.BertBackbone(**_SMALL)

    def refused():
        with pytest.raises(ValueError, match=message):
            call(backbone)

    _unchanged(backbone, refused)


def test_refusals_leave_the_backbone_as_it_was(tmp_path):
    backbone = flaxbert.BertBackbone(**_SMALL)
    with pytest.raises(ValueError, match=r"'pooled_dense' is not a layer LoRA adapts in a DistilBert backbone"):
        flaxbert.DistilBertBackbone(**_SMALL).enable_lora(2, ["pooled_dense"])
    backbone.enable_lora(2)
    backbone.save_lora_weights(tmp_path / "rank2.lora.h5")
    refused = {
        "twice": (lambda: backbone.enable_lora(4), r"enabled on this backbone already \(rank 2 on \['query', 'val"),
        "name": (lambda: backbone.save_lora_weights(tmp_path / "x.h5"), r"must end in .lora.h5"),
        "missing": (lambda: backbone.load_lora_weights(tmp_path / "none.lora.h5"), r"no LoRA weights file at"),
    }
    other = flaxbert.BertBackbone(**_SMALL)
    other.enable_lora(4)
    other.save_lora_weights(tmp_path / "rank4.lora.h5")
    refused["rank"] = (lambda: backbone.load_lora_weights(tmp_path / "rank4.lora.h5"),
                       r"rank 4 for \['query', 'value'\], but this backbone's LoRA is rank 2 on")  # fmt: skip
    (tmp_path / "junk.lora.h5").write_bytes(b"not hdf5 at all")
    refused["junk"] = (lambda: backbone.load_lora_weights(tmp_path / "junk.lora.h5"), r"cannot be read as an HDF5 file")
    deeper = flaxbert.BertBackbone(**dict(_SMALL, num_layers=3))
    deeper.enable_lora(2)
    deeper.save_lora_weights(tmp_path / "deeper.lora.h5")
    refused["depth"] = (lambda: backbone.load_lora_weights(tmp_path / "deeper.lora.h5"),
                        r"layers \[31, 33\], which this backbone \(2 transformer layers\) has no adapter")  # fmt: skip
    shallower = flaxbert.BertBackbone(**dict(_SMALL, num_layers=1))
    shallower.enable_lora(2)
    shallower.save_lora_weights(tmp_path / "shallower.lora.h5")
    refused["shallower"] = (lambda: backbone.load_lora_weights(tmp_path / "shallower.lora.h5"),
                            r"in transformer layers \[0\] only, .* this backbone has 2: .* another depth")  # fmt: skip
    wider = flaxbert.BertBackbone(**dict(_SMALL, hidden_dim=16))
    wider.enable_lora(2)
    wider.save_lora_weights(tmp_path / "wider.lora.h5")
    refused["width"] = (lambda: backbone.load_lora_weights(tmp_path / "wider.lora.h5"),
                        r"transformer_layer_0/self_attention/value/lora_kernel_a of shape \(16, 2, 2\), but this "
                        r"backbone's is \(8, 2, 2\)")  # fmt: skip
    (tmp_path / "folder.lora.h5").mkdir()
    refused["folder"] = (lambda: backbone.save_lora_weights(tmp_path / "folder.lora.h5"), r"is a directory; pass")
    import h5py

    damaged = {  # name: (rank, layer 11's datasets, what is said)
        "mixed": (np.int64(2), {"lora_kernel_a": (8, 2, 3), "lora_kernel_b": (3, 4)},  # a rank-2 header, rank-3 factors
                  r"is damaged: its rank is 2, but layer 11's LoRA factors have shapes \(8, 2, 3\)"),
        "b_rank": (np.int64(2), {"lora_kernel_a": (8, 2, 2), "lora_kernel_b": (3, 4)},
                   r"its rank is 2, but layer 11's LoRA factors have shapes \(8, 2, 2\) and \(3, 4\)"),
        "float_rank": (np.float64(2.0), {"lora_kernel_a": (8, 2, 2), "lora_kernel_b": (2, 4)},
                       r"gives a LoRA rank of .*2\.0.*; a rank is a positive integer"),
        "one_factor": (np.int64(2), {"lora_kernel_a": (8, 2, 2)},
                       r"holds an entry lora/11 that is not a layer's two LoRA factors"),
    }  # fmt: skip
    for name, (rank, datasets, message) in damaged.items():
        with h5py.File(tmp_path / f"{name}.lora.h5", "w") as f:
            f.create_dataset("lora/vars/rank", data=rank)
            for factor, shape in datasets.items():
                f.create_dataset(f"lora/11/vars/{factor}", data=np.zeros(shape, "float32"))
        refused[name] = (lambda path=tmp_path / f"{name}.lora.h5": backbone.load_lora_weights(path), message)
    for name, (call, message) in refused.items():
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            _unchanged(backbone, call)
        assert backbone.config.lora_rank == 2, name


def test_a_file_written_over_is_replaced_whole(tmp_path, monkeypatch):
    """save_lora_weights writes beside the target and renames: a write that fails leaves the old file as it was."""
    backbone = flaxbert.BertBackbone(**_SMALL)
    backbone.enable_lora(2)
    target = tmp_path / "a.lora.h5"
    backbone.save_lora_weights(target)
    saved = target.read_bytes()
    backbone_params = backbone.params

    def full_disk(*args, **kwargs):  # called while the new file is open and partly written
        raise OSError("disk full")

    monkeypatch.setattr(lora_file, "layer_entries", full_disk)
    with pytest.raises(OSError, match="disk full"):
        backbone.save_lora_weights(target)
    assert target.read_bytes() == saved
    assert [p.name for p in tmp_path.iterdir()] == ["a.lora.h5"]
    assert backbone.params is backbone_params


def test_adapters_are_drawn_as_keras_draws_them_and_decayed_as_kernels():
    """lora_kernel_a: He-uniform over Keras' fan_in (D x heads for a query's [D, H, rank]); lora_kernel_b: zeros.
    The recommended recipe decays them as kernels."""
    backbone = flaxbert.BertBackbone(**dict(_SMALL, hidden_dim=64, num_heads=4))
    backbone.enable_lora(8)
    query = backbone.params["transformer_layer_0"]["self_attention"]["query"]
    limit = np.sqrt(6 / (64 * 4))
    a = np.asarray(query["lora_kernel_a"])
    assert a.shape == (64, 4, 8) and np.abs(a).max() <= limit and np.abs(a).max() > 0.95 * limit
    np.testing.assert_allclose(a.std(), limit / np.sqrt(3), rtol=0.05)  # a uniform draw's
    assert not np.asarray(query["lora_kernel_b"]).any()
    mask = optimizers.weight_decay_mask(backbone.params)["transformer_layer_0"]["self_attention"]["query"]
    assert mask == {"kernel": True, "bias": False, "lora_kernel_a": True, "lora_kernel_b": True}


def test_trainable_after_enable_lora_counts_as_keras_hubs(keras_hub, keras):
    """keras-hub: enable_lora trains the adapters and adapted biases; `trainable = False` freezes them too; setting
    `trainable = True` afterwards (on the backbone, or the classifier) trains everything, adapters included."""
    keras.utils.set_random_seed(0)
    dims = dict(_SMALL, num_layers=1, hidden_dim=16, intermediate_dim=32, max_sequence_length=16)
    reference = keras_hub.models.BertTextClassifier(keras_hub.models.BertBackbone(**dims), 2, preprocessor=None)
    classifier = flaxbert.BertTextClassifier(flaxbert.BertBackbone(**dims), num_classes=2)

    def trainable(model) -> int:
        if model is reference:
            return sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
        lines = []
        classifier.summary(print_fn=lines.append)
        return int(next(line for line in lines if line.startswith("Trainable")).split()[2].replace(",", ""))

    steps = [lambda m: m.backbone.enable_lora(2), lambda m: setattr(m.backbone, "trainable", False),
             lambda m: setattr(m.backbone, "trainable", True), lambda m: setattr(m.backbone, "trainable", False),
             lambda m: setattr(m, "trainable", True)]  # fmt: skip
    counts = []
    for step in steps:
        for model in (reference, classifier):
            step(model)
        counts.append((trainable(reference), trainable(classifier)))
    assert [ours for _, ours in counts] == [theirs for theirs, _ in counts], counts
    head_only, adapters, everything = counts[1][0], counts[0][0], counts[2][0]
    assert head_only < adapters < everything  # three different sets, not one count repeated
    assert counts[3][0] == head_only and counts[4][0] == everything


def test_get_config_builds_the_same_backbone_and_lora_calls_during_a_fit_are_refused(tmp_path):
    """`BertBackbone(**backbone.get_config())`, Keras' round trip, takes the LoRA fields (a LoRA config trains its
    adapters alone, as after enable_lora). enable_lora and load_lora_weights while a fit of a classifier on the
    backbone runs are refused: the fit ends by putting back its own params."""
    plain = flaxbert.BertBackbone(**_SMALL)
    assert flaxbert.BertBackbone(**plain.get_config()).config == plain.config
    plain.enable_lora(2, ["value"])
    rebuilt = flaxbert.DistilBertBackbone(**flaxbert.DistilBertBackbone(**_SMALL).get_config())
    assert rebuilt.config.lora_rank == 0
    again = flaxbert.BertBackbone(**plain.get_config())
    assert again.config == plain.config and again._trains == "adapters"
    plain.save_lora_weights(tmp_path / "v.lora.h5")

    classifier = flaxbert.BertTextClassifier(flaxbert.BertBackbone(**_SMALL), num_classes=2)
    x, y = _inputs(rows=4, length=6), np.array([0, 1, 0, 1])
    refused = []

    def on_log(row):
        for call in (lambda: classifier.backbone.enable_lora(2),
                     lambda: classifier.backbone.load_lora_weights(tmp_path / "v.lora.h5")):  # fmt: skip
            with pytest.raises(RuntimeError, match=r"while a classifier's fit on it runs .* after fit returns"):
                call()
            refused.append(row["step"])

    classifier.fit(x, y, batch_size=4, epochs=1, verbose=0, on_log=on_log, log_every=1)
    assert refused and classifier.backbone.config.lora_rank == 0
    classifier.backbone.load_lora_weights(tmp_path / "v.lora.h5")  # after the fit: taken
    assert classifier.predict(x, verbose=0).shape == (4, 2)


def test_params_with_or_without_adapters_say_how_to_fit_them():
    with_lora = flaxbert.BertBackbone(**_SMALL)
    with_lora.enable_lora(2)
    plain = flaxbert.BertBackbone(**_SMALL)
    with pytest.raises(ValueError, match=r"they hold LoRA adapters, which this model has not: call backbone.enable"):
        plain.params = with_lora.params
    with pytest.raises(ValueError, match=r"this model has LoRA adapters and they have none"):
        with_lora.params = plain.params
    plain.params = lora.merged(with_lora.params)  # the merged params fit the plain model


def test_a_distil_bert_lora_fit_on_every_layer_trains_as_keras_hubs(keras_hub, keras, tmp_path):
    """DistilBERT with adapters on all six layer kinds: its head's own `pooled_dense` (the classifier's, not the
    backbone's) stays a plain trained layer, as in keras-hub; one epoch gives Keras' losses and logits."""
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.DistilBertBackbone(**dict(_SMALL, num_layers=1, hidden_dim=16, intermediate_dim=32,
                                                          max_sequence_length=16), dropout=0.0)  # fmt: skip
    keras_hub.models.DistilBertTextClassifier(
        backbone=backbone, num_classes=3, preprocessor=None, dropout=0.0
    ).save_to_preset(str(tmp_path / "preset"))
    x, y = _inputs(rows=8, length=8, segments=False, seed=2), np.arange(8) % 3
    model = keras_hub.models.DistilBertTextClassifier.from_preset(str(tmp_path / "preset"))
    model.backbone.enable_lora(2, _EVERY_LAYER)
    model.backbone.save_lora_weights(str(tmp_path / "initial.lora.h5"))
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    want = keras.Model.fit(model, x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history["loss"]

    classifier = flaxbert.DistilBertTextClassifier.from_preset(tmp_path / "preset")
    classifier.backbone.load_lora_weights(tmp_path / "initial.lora.h5")
    classifier.compile(optimizer=optimizers.keras_default(1e-2))
    got = classifier.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(classifier.predict(x, verbose=0), keras.Model.predict(model, x, verbose=0), atol=1e-6)
    assert "lora_kernel_a" not in str(jax.tree_util.tree_structure(classifier.head_params))
    lines = []
    classifier.summary(print_fn=lines.append)
    keras_count = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert f"Trainable params: {keras_count:,} " in "\n".join(lines)


def test_the_steps_of_the_model_before_enable_lora_are_let_go():
    classifier = flaxbert.BertTextClassifier(flaxbert.BertBackbone(**_SMALL), num_classes=2)
    x = _inputs(rows=2, length=4)
    classifier.predict(x, verbose=0)
    before = classifier.model
    assert any(key[2] == before for key in classifier._jitted)
    classifier.backbone.enable_lora(2)
    classifier.predict(x, verbose=0)
    assert classifier.model != before and all(key[2] == classifier.model for key in classifier._jitted)
