"""keras-hub presets written by keras-hub's own save_to_preset load in flaxbert with equal outputs (fp32, 1e-5)."""

import json
import re
import shutil

import numpy as np
import pytest

import flaxbert

pytestmark = pytest.mark.parity
ATOL = 1e-5


def _inputs(bert: bool, vocab: int, segments: int = 2):
    rng = np.random.default_rng(0)
    mask = (np.arange(10)[None] < np.array([10, 6, 3])[:, None]).astype("int32")
    x = {"token_ids": (rng.integers(1, vocab, (3, 10)) * mask).astype("int32"), "padding_mask": mask}
    if bert:
        x["segment_ids"] = ((np.arange(10)[None] >= 4) * mask * (segments - 1)).astype("int32")
    return x


def _randomize(model):
    """Non-trivial biases and LayerNorm params too (keras initialises them to 0 and 1)."""
    rng = np.random.default_rng(1)
    for weight in model.weights:
        weight.assign(weight.numpy() + 0.05 * rng.standard_normal(weight.shape).astype("float32"))


def _max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.mark.parametrize("arch", ["bert", "distil_bert"])
def test_backbone_preset_matches_keras_hub(keras_hub, tmp_path, arch):
    bert = arch == "bert"
    kwargs = dict(vocabulary_size=99, num_layers=2, num_heads=3, hidden_dim=48, intermediate_dim=37,
                  max_sequence_length=40, dropout=0.15)  # fmt: skip
    if bert:
        reference = keras_hub.models.BertBackbone(**kwargs, num_segments=3)
    else:
        reference = keras_hub.models.DistilBertBackbone(**kwargs)
    _randomize(reference)
    reference.save_to_preset(str(tmp_path / "preset"))
    x = _inputs(bert, 99, 3)
    want = reference(x)
    loaded = (flaxbert.BertBackbone if bert else flaxbert.DistilBertBackbone).from_preset(tmp_path / "preset")
    assert loaded.config.dropout == 0.15  # what fine-tuning it applies: config.json's rate, not the default 0.1
    got = loaded(x)
    if bert:
        assert _max_diff(got["sequence_output"], want["sequence_output"]) <= ATOL
        assert _max_diff(got["pooled_output"], want["pooled_output"]) <= ATOL
    else:
        assert _max_diff(got, want) <= ATOL


@pytest.mark.parametrize("arch", ["bert", "distil_bert"])
def test_task_preset_matches_keras_hub(keras_hub, tmp_path, arch):
    bert = arch == "bert"
    kwargs = dict(vocabulary_size=101, num_layers=1, num_heads=2, hidden_dim=36, intermediate_dim=20,
                  max_sequence_length=24)  # fmt: skip
    if bert:
        backbone = keras_hub.models.BertBackbone(**kwargs)
        reference = keras_hub.models.BertTextClassifier(backbone, num_classes=4, preprocessor=None, dropout=0.3)
    else:
        backbone = keras_hub.models.DistilBertBackbone(**kwargs)
        reference = keras_hub.models.DistilBertTextClassifier(backbone, num_classes=4, preprocessor=None, hidden_dim=12,
                                                              dropout=0.3)  # fmt: skip
    _randomize(reference)
    reference.compile()  # as after a fit: Adam's moments are saved in task.weights.h5 beside the head's weights
    reference.optimizer.build(reference.trainable_variables)
    reference.save_to_preset(str(tmp_path / "preset"))
    x = _inputs(bert, 101)
    want = np.asarray(reference(x))  # a direct call: keras-hub's predict needs grain or TensorFlow
    loaded = flaxbert.TextClassifier.from_preset(tmp_path / "preset", preprocessor=None)
    assert type(loaded).__name__ == ("BertTextClassifier" if bert else "DistilBertTextClassifier")
    assert loaded.num_classes == 4 and loaded.backbone.config.activation == ("gelu_approximate" if bert else "gelu")
    assert loaded.head.dropout == 0.3 and (bert or loaded.head.hidden_dim == 12)  # task.json's, not the defaults
    assert _max_diff(loaded.predict(x, batch_size=8, verbose=0), want) <= ATOL
    with pytest.raises(ValueError, match="load it with"):
        (flaxbert.DistilBertTextClassifier if bert else flaxbert.BertTextClassifier).from_preset(
            tmp_path / "preset", preprocessor=None
        )


def test_a_softmax_heads_loss_is_keras_hubs_compiled_one_not_its_constructors(keras_hub, tmp_path):
    """keras-hub's Task compiles in its constructor before BertTextClassifier sets its activation, so a softmax
    classifier's default loss treats the probabilities as logits (from_logits=True) until compile() is called again.
    flaxbert's "auto" loss is the one keras-hub's compile() sets, from the probabilities (README: deviations)."""
    backbone = keras_hub.models.BertBackbone(vocabulary_size=101, num_layers=1, num_heads=2, hidden_dim=16,
                                             intermediate_dim=20, max_sequence_length=24, dropout=0.0)  # fmt: skip
    reference = keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=None, activation="softmax")
    _randomize(reference)
    reference.save_to_preset(str(tmp_path / "preset"))
    x, y = _inputs(True, 101), np.array([0, 2, 1])
    as_built = float(reference.test_on_batch(x, y)[0])
    assert reference.loss._fn_kwargs["from_logits"] is True  # the constructor's compile, before the activation
    reference.compile()
    assert reference.loss._fn_kwargs["from_logits"] is False
    loaded = flaxbert.TextClassifier.from_preset(tmp_path / "preset", preprocessor=None)
    ours = loaded.evaluate(x, y, batch_size=8, verbose=0)["loss"]
    assert ours == pytest.approx(float(reference.test_on_batch(x, y)[0]), rel=1e-5)
    assert abs(ours - as_built) > 1e-4


def test_sharded_and_bfloat16_presets_load(keras_hub, tmp_path):
    """keras-hub's sharded presets (model.weights.json lists each layer's shard files: flaxbert failed on the lists)
    and bfloat16 ones (Keras writes bfloat16 variables as opaque 2-byte records: flaxbert handed those to jax)."""
    kwargs = dict(vocabulary_size=101, num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=20,
                  max_sequence_length=24)  # fmt: skip
    x = _inputs(True, 101)
    models = {}
    for dtype in ("float32", "bfloat16"):
        backbone = keras_hub.models.BertBackbone(**kwargs, dtype=dtype)
        models[dtype] = keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=None)
    _randomize(models["bfloat16"])
    models["float32"].set_weights([np.asarray(w.numpy(), np.float32) for w in models["bfloat16"].weights])
    want = np.asarray(models["float32"](x))
    models["float32"].save_to_preset(str(tmp_path / "sharded"), max_shard_size=0.00003)
    assert len(list((tmp_path / "sharded").glob("model_*.weights.h5"))) > 1
    models["bfloat16"].save_to_preset(str(tmp_path / "bfloat16"))
    sharded = flaxbert.TextClassifier.from_preset(tmp_path / "sharded", preprocessor=None)
    assert _max_diff(sharded.predict(x, batch_size=8, verbose=0), want) <= ATOL
    # The bfloat16 preset's weights, read exactly: in float32 compute its logits are the float32 copy's.
    bfloat16 = flaxbert.TextClassifier.from_preset(tmp_path / "bfloat16", preprocessor=None, dtype="float32")
    assert _max_diff(bfloat16.predict(x, batch_size=8, verbose=0), want) <= ATOL
    # Without dtype, keras-hub reloads a bfloat16-saved preset in its global float32 policy, and so does flaxbert (it
    # computed in bfloat16: 1.5e-2 from keras-hub's logits).
    reloaded = keras_hub.models.TextClassifier.from_preset(str(tmp_path / "bfloat16"), preprocessor=None)
    assert reloaded.backbone.dtype_policy.name == "float32"
    default = flaxbert.TextClassifier.from_preset(tmp_path / "bfloat16", preprocessor=None)
    assert default.backbone.config.dtype == "float32"
    assert _max_diff(default.predict(x, batch_size=8, verbose=0), np.asarray(reloaded(x))) <= ATOL
    # float16 variables too (refused as weights that "do not fit the model"), as keras-hub reloads them
    float16 = keras_hub.models.BertTextClassifier(keras_hub.models.BertBackbone(**kwargs, dtype="float16"), 3,
                                                  preprocessor=None)  # fmt: skip
    float16.set_weights([np.asarray(w.numpy(), np.float16) for w in models["bfloat16"].weights])
    float16.save_to_preset(str(tmp_path / "float16"))
    reloaded = keras_hub.models.TextClassifier.from_preset(str(tmp_path / "float16"), preprocessor=None)
    loaded = flaxbert.TextClassifier.from_preset(tmp_path / "float16", preprocessor=None)
    assert _max_diff(loaded.predict(x, batch_size=8, verbose=0), np.asarray(reloaded(x))) <= ATOL


@pytest.mark.parametrize("arch", ["bert", "distil_bert"])
def test_a_new_head_keeps_the_saved_heads_settings_as_keras_hub_does(keras_hub, tmp_path, arch):
    """num_classes other than the saved head's: keras-hub rebuilds task.json with num_classes overridden, so the
    head's activation, dropout and DistilBERT hidden_dim stay and only the weights are new. flaxbert built a head
    from the constructor's defaults: logits instead of the saved softmax probabilities."""
    bert = arch == "bert"
    kwargs = dict(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
                  max_sequence_length=16)  # fmt: skip
    head = dict(num_classes=3, preprocessor=None, activation="softmax", dropout=0.3 if bert else 0.4)
    if bert:
        reference = keras_hub.models.BertTextClassifier(keras_hub.models.BertBackbone(**kwargs), **head)
    else:
        reference = keras_hub.models.DistilBertTextClassifier(keras_hub.models.DistilBertBackbone(**kwargs), **head,
                                                              hidden_dim=24)  # fmt: skip
    reference.save_to_preset(str(tmp_path / "preset"))
    settings = ["num_classes", "activation", "dropout"] + ([] if bert else ["hidden_dim"])

    def keras_hub_head(**overrides):
        config = keras_hub.models.TextClassifier.from_preset(str(tmp_path / "preset"), **overrides).get_config()
        return {k: None if config[k] == "linear" else config[k] for k in settings}

    def flaxbert_head(**overrides):
        with pytest.warns(UserWarning, match="3-class head; num_classes=5 gets a new, randomly initialised head"):
            classifier = flaxbert.TextClassifier.from_preset(tmp_path / "preset", preprocessor=None, **overrides)
        return classifier, {k: getattr(classifier.head, k) for k in settings}

    classifier, got = flaxbert_head(num_classes=5)
    saved = {"activation": "softmax", "dropout": head["dropout"]} | ({} if bert else {"hidden_dim": 24})
    assert got == keras_hub_head(num_classes=5) == {"num_classes": 5, **saved}
    probabilities = classifier.predict(_inputs(bert, 50), batch_size=8, verbose=0)
    np.testing.assert_allclose(probabilities.sum(-1), np.ones(3), rtol=1e-6)  # softmax, as saved
    if not bert:
        assert classifier.head_params["pooled_dense"]["kernel"].shape == (16, 24)
    overrides = {"num_classes": 5, "activation": None, "dropout": 0.0}  # the keywords win over task.json
    assert flaxbert_head(**overrides)[1] == keras_hub_head(**overrides) == {**saved, **overrides}


def test_weights_saved_over_a_sharded_save_are_read_as_keras_hub_reads_them(keras_hub, tmp_path):
    """keras-hub's save_to_preset leaves an earlier sharded save's index and shards beside the new model.weights.h5,
    and reads model.weights.h5 first; flaxbert read the old shards, without a word (0.11 in logits)."""
    backbone = keras_hub.models.BertBackbone(vocabulary_size=101, num_layers=1, num_heads=2, hidden_dim=32,
                                             intermediate_dim=20, max_sequence_length=24)  # fmt: skip
    model = keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=None)
    model.save_to_preset(str(tmp_path / "p"), max_shard_size=0.00003)
    _randomize(model)
    model.save_to_preset(str(tmp_path / "p"))
    assert (tmp_path / "p" / "model.weights.json").is_file()  # the old index stays
    x = _inputs(True, 101)
    loaded = flaxbert.TextClassifier.from_preset(tmp_path / "p", preprocessor=None)
    assert _max_diff(loaded.predict(x, batch_size=8, verbose=0), model(x)) <= ATOL


def test_a_sigmoid_head_is_refused_as_saved_and_kept_as_logits_when_asked(keras_hub, tmp_path, hub_cache):
    """keras-hub's multi-label head (activation="sigmoid") was refused in words that named no file, and the fix it
    gave, activation=None, was refused too. hf:// would have failed in its conversion."""
    import jax

    backbone = keras_hub.models.BertBackbone(vocabulary_size=101, num_layers=1, num_heads=2, hidden_dim=32,
                                             intermediate_dim=20, max_sequence_length=24)  # fmt: skip
    model = keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=None, activation="sigmoid")
    _randomize(model)
    model.save_to_preset(str(tmp_path / "p"))
    with pytest.raises(ValueError, match=r"/p: task.json's BertTextClassifier has activation='sigmoid'.*Pass "
                                         r"activation=None to keep its trained weights"):  # fmt: skip
        flaxbert.TextClassifier.from_preset(tmp_path / "p", preprocessor=None)
    x = _inputs(True, 101)
    hub_cache("org/sigmoid", tmp_path / "p")
    for preset in (tmp_path / "p", "hf://org/sigmoid"):  # not converted: the keyword reaches the download itself
        logits = flaxbert.TextClassifier.from_preset(preset, preprocessor=None, activation=None)
        assert _max_diff(jax.nn.sigmoid(logits.predict(x, batch_size=8, verbose=0)), model(x)) <= ATOL


@pytest.fixture(scope="module")
def task_preset(keras_hub, tmp_path_factory):
    """A keras-hub BertTextClassifier preset with tokenizer files. keras-hub's tokenizer needs tensorflow-text, so
    they are written here in keras-hub's layout (§7.1). Tests that damage it work on a copy (`_copy`)."""
    path = tmp_path_factory.mktemp("keras") / "p"
    backbone = keras_hub.models.BertBackbone(vocabulary_size=12, num_layers=1, num_heads=2, hidden_dim=8,
                                             intermediate_dim=8, max_sequence_length=16)  # fmt: skip
    keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None).save_to_preset(str(path))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "."]
    (path / "assets" / "tokenizer").mkdir(parents=True)
    (path / "assets" / "tokenizer" / "vocabulary.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = {"class_name": "BertTokenizer", "config": {"lowercase": True, "strip_accents": False, "split": True,
                                                           "special_tokens_in_strings": False}}  # fmt: skip
    (path / "tokenizer.json").write_text(json.dumps(tokenizer))
    preprocessor = {"class_name": "BertTextClassifierPreprocessor", "config": {"sequence_length": 9,
                                                                               "truncate": "waterfall"}}  # fmt: skip
    (path / "preprocessor.json").write_text(json.dumps(preprocessor))
    return path


def _copy(preset, tmp_path, damage=None):
    copy = tmp_path / "copy"
    shutil.copytree(preset, copy)
    if damage is not None:
        damage(copy)
    return copy


def test_corrupt_keras_weights_are_named(task_preset, tmp_path):
    preset = _copy(task_preset, tmp_path)
    weights = preset / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="model.weights.h5 is not a readable .weights.h5 file"):
        flaxbert.BertBackbone.from_preset(preset)


def _drop_num_heads(preset):
    config = json.loads((preset / "config.json").read_text())
    del config["config"]["num_heads"]
    (preset / "config.json").write_text(json.dumps(config))


def _quantized(policy: str):  # what backbone.quantize(mode) then save_to_preset write (keras-hub 0.32)
    def quantize(preset):
        config = json.loads((preset / "config.json").read_text())
        layer = {"class_name": policy, "config": {"mode": "int8", "source_name": None}}
        config["config"]["dtype"] = {"class_name": "DTypePolicyMap", "config": {"policy_map": {"embedding": layer}}}
        (preset / "config.json").write_text(json.dumps(config))

    return quantize


def _edit(file: str, *path: str, value):
    def edit(preset):
        saved = json.loads((preset / file).read_text())
        node = saved
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        (preset / file).write_text(json.dumps(saved))

    return edit


def _add_third_dense_variable(preset):
    import h5py

    with h5py.File(preset / "model.weights.h5", "r+") as f:
        f.create_dataset("layers/dense/vars/2", data=np.zeros(8, "f4"))


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (lambda p: (p / "task.json").write_text("{"), ValueError, r"task.json is not valid JSON"),
        (_drop_num_heads, ValueError, r"config.json lacks 'num_heads', which a keras-hub BertBackbone config needs"),
        (
            lambda p: (p / "tokenizer.json").write_text('{"class_name": "BertTokenizer"}'),
            ValueError,
            r"tokenizer.json lacks 'config'",
        ),
        (lambda p: (p / "preprocessor.json").write_text("{"), ValueError, r"preprocessor.json is not valid JSON"),
        (
            _add_third_dense_variable,
            ValueError,
            r"unexpected variable 'layers/dense/vars/2' in the weights file: that layer has 2 variable\(s\)",
        ),
        (lambda p: (p / "task.weights.h5").unlink(), FileNotFoundError, r"task.weights.h5 is missing"),
        # each was an "unexpected variable" in the weights file
        (_quantized("QuantizedDTypePolicy"), ValueError, r"is a quantized keras-hub preset .*QuantizedDTypePolicy"),
        (_quantized("Int4DTypePolicy"), ValueError, r"is a quantized keras-hub preset .*holds Int4DTypePolicy"),
        # a bare TypeError from BertHeadConfig (hidden_dim), and a message that named no file
        (
            _edit("task.json", "registered_name", value="keras_hub>DistilBertTextClassifier"),
            ValueError,
            r"task.json names a DistilBertTextClassifier but config.json a BertBackbone: the files come from two",
        ),
        (
            _edit("config.json", "config", "num_layers", value="1"),
            ValueError,
            r"p?/copy: config.json does not describe a model flaxbert builds: BertConfig.num_layers must be a positive",
        ),
    ],
    ids=[
        "task_json",
        "config_field",
        "tokenizer_json",
        "preprocessor_json",
        "variable_index",
        "task_weights",
        "int8",
        "int4",
        "task_class",
        "config_value",
    ],  # fmt: skip
)
def test_damaged_side_files_are_named(task_preset, tmp_path, damage, error, message):
    """Each raised a bare JSONDecodeError, KeyError or IndexError, or called a missing file corrupt."""
    with pytest.raises(error, match=message):
        flaxbert.TextClassifier.from_preset(_copy(task_preset, tmp_path, damage))


@pytest.mark.parametrize(
    "setting",
    [
        {"oov_token": "<unk>"},
        {"suffix_indicator": "@@"},
        {"special_tokens": ["[FOO]"]},
        {"split": False},
        {"sequence_length": 6},
    ],  # fmt: skip
    ids=lambda setting: next(iter(setting)),
)
def test_keras_tokenizer_settings_flaxbert_lacks_are_refused(task_preset, tmp_path, setting):
    """keras-hub's tokenizer.json keys other than the case ones were dropped, and the ids were other than keras-hub's
    (an oov_token '<unk>': [2, 1, 6, 3] where keras-hub gives [2, 10, 6, 3]); now each is refused by name."""

    def edit(preset):
        saved = json.loads((preset / "tokenizer.json").read_text())
        saved["config"].update(setting)
        (preset / "tokenizer.json").write_text(json.dumps(saved))

    preset = _copy(task_preset, tmp_path, edit)
    ((key, value),) = setting.items()
    with pytest.raises(ValueError, match=rf"sets the tokenizer's {key}={re.escape(repr(value))}; flaxbert's"):
        flaxbert.TextClassifier.from_preset(preset)
    assert flaxbert.TextClassifier.from_preset(preset, preprocessor=None).preprocessor is None


def test_task_preset_with_tokenizer_assets(task_preset):
    loaded = flaxbert.BertTextClassifier.from_preset(task_preset)
    assert (loaded.preprocessor.sequence_length, loaded.preprocessor.truncate) == (9, "waterfall")
    x = loaded.preprocessor(["The quick brown fox."])
    assert x["token_ids"].tolist() == [[2, 5, 6, 7, 8, 9, 3, 0, 0]]
    assert loaded.predict(["The quick brown fox."], batch_size=8, verbose=0).shape == (1, 2)
    assert flaxbert.BertTextClassifier.from_preset(task_preset, sequence_length=6).preprocessor.sequence_length == 6


def test_another_tasks_preprocessor_json_is_not_read_as_in_keras_hub(task_preset, tmp_path):
    """A masked LM's preprocessor.json: keras-hub's TextClassifier.from_preset builds its default preprocessor, and
    flaxbert read its sequence_length (8, where keras-hub's 16 kept all 12 tokens of a text)."""
    preset = _copy(task_preset, tmp_path, _edit("preprocessor.json", "class_name", value="BertMaskedLMPreprocessor"))
    loaded = flaxbert.BertTextClassifier.from_preset(preset)
    assert (loaded.preprocessor.sequence_length, loaded.preprocessor.truncate) == (16, "round_robin")


def test_a_preset_saved_without_a_preprocessor_gets_a_length_its_positions_hold(task_preset, tmp_path):
    """keras-hub's default 512 is more than this model's 16 positions: from_preset refused it, asking for a
    sequence_length the user never gave."""
    preset = _copy(task_preset, tmp_path, lambda p: (p / "preprocessor.json").unlink())
    loaded = flaxbert.BertTextClassifier.from_preset(preset)
    assert (loaded.preprocessor.sequence_length, loaded.backbone.config.max_sequence_length) == (16, 16)


def test_unknown_keywords_and_an_idle_sequence_length_are_refused(task_preset, tmp_path):
    """`compile` reached BertHeadConfig (`__init__() got an unexpected keyword argument`); a sequence_length for a
    preset without a tokenizer (keras-hub saves none with preprocessor=None) was ignored."""
    with pytest.raises(TypeError, match="unexpected keyword argument 'compile'; BertTextClassifier.from_preset takes "
                                        "load_weights, num_classes, preprocessor, sequence_length, "):  # fmt: skip
        flaxbert.BertTextClassifier.from_preset(task_preset, compile=False)
    no_tokenizer = _copy(task_preset, tmp_path, lambda p: (p / "tokenizer.json").unlink())
    with pytest.raises(ValueError, match="has no tokenizer .*sequence_length=6 to set"):
        flaxbert.BertTextClassifier.from_preset(no_tokenizer, sequence_length=6)


def test_built_in_name_downloads_keras_preset_and_converts_once(keras_hub, tmp_path, hub_cache):
    """`bert_tiny_en_uncased_sst2` resolves to hf://keras/...; the Hub is a local cache holding a keras-hub save."""
    backbone = keras_hub.models.BertBackbone(vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8,
                                             intermediate_dim=8, max_sequence_length=16)  # fmt: skip
    reference = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)
    _randomize(reference)
    reference.save_to_preset(str(tmp_path / "src"))
    snapshot = hub_cache("keras/bert_tiny_en_uncased_sst2", tmp_path / "src")
    x = _inputs(True, 30)
    loaded = flaxbert.TextClassifier.from_preset("bert_tiny_en_uncased_sst2", preprocessor=None)
    assert _max_diff(loaded.predict(x, batch_size=8, verbose=0), np.asarray(reference(x))) <= ATOL
    (snapshot / "model.weights.h5").unlink()  # the second load parses no h5: it reads the converted copy
    again = flaxbert.BertTextClassifier.from_preset("bert_tiny_en_uncased_sst2", preprocessor=None)
    np.testing.assert_array_equal(again.predict(x, batch_size=8, verbose=0), loaded.predict(x, batch_size=8, verbose=0))


def test_a_preset_of_another_keras_task_loads_its_backbone(keras_hub, tmp_path, hub_cache):
    """A BertMaskedLM preset's task.json was taken for a classifier head: "task 'BertMaskedLM' is not supported",
    locally with num_classes and through hf:// even for its backbone. keras-hub loads it as a bare backbone."""
    backbone = keras_hub.models.BertBackbone(vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8,
                                             intermediate_dim=8, max_sequence_length=16)  # fmt: skip
    keras_hub.models.BertMaskedLM(backbone, preprocessor=None).save_to_preset(str(tmp_path / "mlm"))
    want = flaxbert.BertBackbone.from_preset(tmp_path / "mlm").params  # test_backbone_preset_matches_keras_hub
    local = flaxbert.TextClassifier.from_preset(tmp_path / "mlm", num_classes=2, preprocessor=None)
    assert local.num_classes == 2
    np.testing.assert_array_equal(local.backbone.params["pooled_dense"]["kernel"], want["pooled_dense"]["kernel"])
    with pytest.raises(ValueError, match="is a keras-hub BertMaskedLM preset: its head is no text classifier.*"
                                         "pass num_classes"):  # fmt: skip
        flaxbert.TextClassifier.from_preset(tmp_path / "mlm", preprocessor=None)
    hub_cache("org/mlm", tmp_path / "mlm")
    from_hub = flaxbert.TextClassifier.from_preset("hf://org/mlm", num_classes=3, preprocessor=None)
    np.testing.assert_array_equal(from_hub.backbone.params["pooled_dense"]["kernel"], want["pooled_dense"]["kernel"])
