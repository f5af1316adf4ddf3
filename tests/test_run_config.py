"""The train.py config system: typed dotted overrides, unknown keys rejected, every field read by the run."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

from flaxbert.run import config as cfg

REPO = Path(__file__).resolve().parents[1]


def test_overrides_parse_with_the_field_type():
    c = cfg.Config()
    c = cfg.override(c, "optimizer.learning_rate", "3e-5")
    c = cfg.override(c, "epochs", "7")
    c = cfg.override(c, "bucket", "false")
    c = cfg.override(c, "data.text_columns", "question,answer")
    c = cfg.override(c, "mesh.fsdp", "4")
    assert (c.optimizer.learning_rate, c.epochs, c.bucket) == (3e-5, 7, False)
    assert c.data.text_columns == ("question", "answer") and c.mesh.fsdp == 4


def test_unknown_keys_and_bad_values():
    with pytest.raises(cfg.ConfigError, match=r"unknown config key 'optimizer.lr'.*optimizer.name"):
        cfg.override(cfg.Config(), "optimizer.lr", "1")
    with pytest.raises(cfg.ConfigError, match="unknown config key 'data'"):
        cfg.override(cfg.Config(), "data", "x")
    with pytest.raises(cfg.ConfigError, match="'epochs' takes a int, got 'three'"):
        cfg.override(cfg.Config(), "epochs", "three")
    with pytest.raises(cfg.ConfigError, match="precision must be one of"):
        cfg.validate(cfg.Config(preset="x", precision="float16"))
    kernels = r"attention_kernel must be one of \('auto', 'xla', 'pallas', 'cudnn'\).*, got 'flash'"
    with pytest.raises(cfg.ConfigError, match=kernels):
        cfg.validate(cfg.Config(preset="x", attention_kernel="flash", data=cfg.DataConfig(train="t", validation="v")))
    with pytest.raises(cfg.ConfigError, match=r"data.label_column is empty: pass --label-column NAME"):
        cfg.validate(cfg.Config(preset="x", data=cfg.DataConfig(label_column="")))
    with pytest.raises(cfg.ConfigError, match=r"data.text_columns must name one text column, or two"):
        cfg.validate(cfg.Config(preset="x", data=cfg.DataConfig(text_columns=())))
    with pytest.raises(cfg.ConfigError, match="group_by_length=true needs bucket=true"):
        cfg.validate(cfg.Config(preset="x", bucket=False, group_by_length=True))
    with pytest.raises(cfg.ConfigError, match=r"optimizer.warmup_fraction must be in \[0, 1\], got 1.5"):
        cfg.validate(cfg.Config(preset="x", optimizer=cfg.OptimizerConfig(name="recommended", warmup_fraction=1.5)))
    # the Keras default optimizer reads none of these: --config.optimizer.weight_decay=0.5 trained as if unset
    unread = cfg.OptimizerConfig(name="keras_default", weight_decay=0.5, clipnorm=2.0)
    refusal = r"optimizer.weight_decay=0.5, optimizer.clipnorm=2.0: read by optimizer.name=recommended only .*add --"
    with pytest.raises(cfg.ConfigError, match=refusal):
        cfg.validate(cfg.Config(preset="x", optimizer=unread, data=cfg.DataConfig(train="t", validation="v")))


def test_the_recommended_optimizers_settings_default_to_its_own_defaults_and_are_checked():
    """`--config.optimizer.name=recommended` alone trains with `optimizers.recommended`'s defaults (10% warmup, weight
    decay 0.01, clipnorm 1), and a negative `data.train_limit` (which would cut rows off the end) is refused."""
    import inspect

    from flaxbert.training import optimizers

    defaults = {k: p.default for k, p in inspect.signature(optimizers.recommended).parameters.items()}
    config = cfg.OptimizerConfig()
    assert (config.learning_rate, config.warmup_fraction, config.weight_decay, config.clipnorm) == (
        defaults["learning_rate"], defaults["warmup_fraction"], defaults["weight_decay"], defaults["clipnorm"]
    )  # fmt: skip
    with pytest.raises(cfg.ConfigError, match=r"data.train_limit must be >= 0"):
        cfg.validate(cfg.Config(preset="x", data=cfg.DataConfig(train_limit=-5)))


def test_execution_fields_default_to_the_presets_and_parse_none():
    c = cfg.Config()
    assert (c.precision, c.attention_kernel, c.scan_layers) == (None, None, None)
    c = cfg.override(cfg.override(c, "scan_layers", "true"), "precision", "bfloat16")
    assert (c.scan_layers, c.precision) == (True, "bfloat16")
    c = cfg.override(cfg.override(c, "scan_layers", "None"), "precision", "none")
    assert (c.scan_layers, c.precision) == (None, None)
    with pytest.raises(cfg.ConfigError, match="'scan_layers' takes a bool, got 'maybe'"):
        cfg.override(c, "scan_layers", "maybe")


def test_a_run_keeps_a_presets_execution_unless_told(tmp_path):
    """train.py's defaults must not undo how a saved flaxbert preset runs (its dtype, scan_layers, kernel)."""
    import flaxbert
    from flaxbert.run import job

    backbone = flaxbert.BertBackbone(50, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
                                     max_sequence_length=16, dtype="bfloat16", scan_layers=True,
                                     attention_kernel="cudnn")  # fmt: skip
    tokenizer = flaxbert.BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"], lowercase=True)
    preprocessor = flaxbert.BertTextClassifierPreprocessor(tokenizer, sequence_length=16)
    flaxbert.BertTextClassifier(backbone, num_classes=2, preprocessor=preprocessor).save_to_preset(tmp_path / "p")
    kept = job.build_classifier(cfg.Config(preset=str(tmp_path / "p"), sequence_length=16)).backbone.config
    assert (kept.dtype, kept.scan_layers, kept.attention_kernel) == ("bfloat16", True, "cudnn")
    told = cfg.Config(preset=str(tmp_path / "p"), sequence_length=16, precision="float32", scan_layers=False)
    changed = job.build_classifier(told).backbone.config
    assert (changed.dtype, changed.scan_layers) == ("float32", False)


def test_attention_kernels_are_the_models():
    """run.config repeats the kernel names so that train.py can reject a bad one before importing jax."""
    from flaxbert.models.config import ATTENTION_KERNELS

    assert cfg.ATTENTION_KERNELS == ATTENTION_KERNELS


def test_every_recipe_loads_and_its_saved_config_json_resumes_it():
    """A run's config.json (`to_dict`) compares equal to the config that wrote it, for --resume."""
    from flaxbert.run import job

    for path in sorted((REPO / "configs").glob("*.py")):
        if path.name == "__init__.py":
            continue
        c = cfg.load(path)
        assert job._changed(json.loads(json.dumps(cfg.to_dict(c))), c) == [], path.name


def test_a_runs_config_json_is_a_config_file(tmp_path):
    """train.py --config runs/x/config.json (the config a run ran with) ended in an importlib AttributeError."""
    for path in sorted((REPO / "configs").glob("*.py")):
        if path.name == "__init__.py":
            continue
        c = cfg.load(path)
        (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict(c), indent=2))
        assert cfg.load(tmp_path / "config.json") == c, path.name
    for text, message in [
        ('{"epochs": "3"}', r"config key 'epochs' takes a int, got '3'"),
        (
            '{"optimizer": {"learnig_rate": 1e-5}}',
            r"unknown config key 'optimizer.learnig_rate'; did you mean "
            r"optimizer.learning_rate",
        ),  # fmt: skip
        ('{"mesh": 8}', r"config key 'mesh' takes an object of its fields, got 8"),
        ("[1, 2]", r"is not a run's config.json"),
        ('{"epochs": 3', r"cannot read .* as a run's config.json: Expecting"),
    ]:
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(cfg.ConfigError, match=message):
            cfg.load(tmp_path / "bad.json")
    (tmp_path / "config.yaml").write_text("epochs: 3\n")
    with pytest.raises(cfg.ConfigError, match=r"--config takes a Python file with get_config\(\) or a run's config"):
        cfg.load(tmp_path / "config.yaml")


def test_every_field_is_read_by_the_run():
    """Each key must be read as `config.<key>` (or through the run's `cfg` / `opt` aliases of data / optimizer)."""
    source = (REPO / "flaxbert" / "run" / "job.py").read_text()
    aliases = {"data": "cfg", "optimizer": "opt"}
    unread = []
    for key in cfg.config_keys():
        parent, _, leaf = key.rpartition(".")
        patterns = [rf"config\.{re.escape(key)}\b"]
        if parent in aliases:
            patterns.append(rf"\b{aliases[parent]}\.{leaf}\b")
        if not any(re.search(p, source) for p in patterns):
            unread.append(key)
    assert not unread, f"config fields nothing reads: {unread}"


def test_each_command_line_flag_sets_its_own_config_field_and_no_other():
    """train.py's flags, each set to a value unlike the config file's: --batch-size read into another field (or any
    flag into a neighbour's) trained at the file's value without a word."""
    import train

    default = train.build_config(train.parser().parse_args(["--preset", "p"]), [])
    flags = ["--preset", "p", "--num-classes", "3", "--epochs", "4", "--batch-size", "48", "--learning-rate", "3e-5",
             "--sequence-length", "96", "--precision", "bfloat16", "--seed", "7", "--output-dir", "out",
             "--text-column", "a,b", "--label-column", "y", "--label-names", "neg,pos,mid", "--mesh", "2,4",
             "--offline"]  # fmt: skip
    config = train.build_config(train.parser().parse_args(flags), [])
    want = dataclasses.replace(
        default, num_classes=3, epochs=4, batch_size=48, sequence_length=96, precision="bfloat16", seed=7,
        output_dir="out", offline=True, mesh=cfg.MeshConfig(data=2, fsdp=4),
        optimizer=dataclasses.replace(default.optimizer, learning_rate=3e-5),
        data=dataclasses.replace(default.data, text_columns=("a", "b"), label_column="y",
                                 label_names=("neg", "pos", "mid")),
    )  # fmt: skip
    assert config == want
    assert default.batch_size != 48 and default.eval_batch_size == config.eval_batch_size
