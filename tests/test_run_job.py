"""train.py's run, checked at its boundary before any model is built: what it refuses, and that a refused run writes
nothing (in-process; the end-to-end runs are in test_train_cli.py)."""

import dataclasses
import json
import shutil
import warnings

import numpy as np
import pytest

from flaxbert import data, host_memory
from flaxbert.run import config as cfg
from flaxbert.run import job


def _config(tmp_path, **changes) -> cfg.Config:
    (tmp_path / "train.tsv").write_text("sentence\tlabel\na\tpos\nb\tneg\nc\tmeh\n")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nd\tpos\n")
    files = dict(train=str(tmp_path / "train.tsv"), validation=str(tmp_path / "dev.tsv"), hub_repo="")
    config = cfg.Config(preset=str(tmp_path / "no_preset"), output_dir=str(tmp_path / "out"), num_classes=3,
                        data=dataclasses.replace(cfg.Config().data, **files))  # fmt: skip
    return dataclasses.replace(config, **changes)


def test_label_names_must_name_every_class(tmp_path):
    """Predictions name their class, so a class without a name crashed the run's last phase; now it cannot start."""
    config, _ = job.load_splits(_config(tmp_path))
    assert config.data.label_names == ("meh", "neg", "pos")  # inferred, sorted
    with pytest.raises(data.DataError, match=r"the training file's labels are 3 names .* num_classes=4: pass "
                                             r"--label-names with one name per class"):  # fmt: skip
        job.load_splits(_config(tmp_path, num_classes=4))
    given = _config(tmp_path, num_classes=4)
    given = dataclasses.replace(given, data=dataclasses.replace(given.data, label_names=("meh", "neg", "pos", "x")))
    assert job.load_splits(given)[0].data.label_names == ("meh", "neg", "pos", "x")
    short = dataclasses.replace(given, num_classes=5)
    with pytest.raises(data.DataError, match=r"--label-names gives 4 names .* num_classes=5"):
        job.load_splits(short)


@pytest.mark.parametrize("problem", ["predict_file", "mesh"])
def test_a_bad_predict_file_or_mesh_stops_the_run_before_it_writes(tmp_path, problem):
    """Both used to be found after training (the predict file) or after config.json was written (the mesh)."""
    if problem == "mesh":
        config = dataclasses.replace(_config(tmp_path), mesh=cfg.MeshConfig(data=3, fsdp=1))
        refusal = r"--mesh 3,1: data=3 x fsdp=1 makes 3 devices but \d+ are in use: set --mesh DATA,FSDP with DATA x"
        with pytest.raises(cfg.ConfigError, match=refusal):
            job.run(config)
        # DATA=-1 with an FSDP that does not divide the devices: the message made up a DATA and said to pass -1
        config = dataclasses.replace(_config(tmp_path), mesh=cfg.MeshConfig(data=-1, fsdp=3))
        with pytest.raises(
            cfg.ConfigError, match=r"--mesh -1,3: fsdp=3 must divide the 8 devices: pick one of 1, 2, 4"
        ):
            job.run(config)
    else:
        with pytest.raises(data.DataError, match=r"nope.jsonl' does not exist"):
            job.run(_config(tmp_path), predict_file=str(tmp_path / "nope.jsonl"))
    assert not (tmp_path / "out").exists()


def test_eval_only_refuses_a_training_runs_directory(tmp_path):
    config = _config(tmp_path)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, label_names=("meh", "neg", "pos")))
    (tmp_path / "out" / "checkpoints").mkdir(parents=True)
    (tmp_path / "out" / "config.json").write_text(json.dumps(cfg.to_dict(config)))
    with pytest.raises(job.RunError, match=r"holds a training run, whose config, metrics and summary --eval-only"):
        job.run(config, eval_only=True)


def test_resume_and_eval_only_together_are_refused(tmp_path):
    """--resume did nothing beside --eval-only, without a word."""
    with pytest.raises(job.RunError, match=r"--resume continues a training run and --eval-only trains nothing"):
        job.run(_config(tmp_path), resume=True, eval_only=True)
    assert not (tmp_path / "out").exists()


def test_resume_takes_the_run_directory_however_it_is_spelled(tmp_path, monkeypatch):
    config = _config(tmp_path, output_dir="runs/x")
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "config.json").write_text(json.dumps(cfg.to_dict(config)))
    monkeypatch.chdir(tmp_path)
    for spelling in ("./runs/x", str(tmp_path / "runs" / "x"), "runs/x/"):
        job._check_output(job.output_dir(config), dataclasses.replace(config, output_dir=spelling), True, False)
    # a local preset by another spelling is the same preset (it was refused: preset: 'preset' -> 'preset/')
    (tmp_path / "preset").mkdir()
    local = dataclasses.replace(config, preset="preset")
    (tmp_path / "runs" / "x" / "config.json").write_text(json.dumps(cfg.to_dict(local)))
    for spelling in ("preset/", "./preset", str(tmp_path / "preset")):
        job._check_output(job.output_dir(config), dataclasses.replace(local, preset=spelling), True, False)
    with pytest.raises(job.RunError, match=r"\(preset: 'preset' -> 'other'\)"):
        job._check_output(job.output_dir(config), dataclasses.replace(local, preset="other"), True, False)
    (tmp_path / "runs" / "x" / "config.json").write_text(json.dumps(cfg.to_dict(config)))
    with pytest.raises(job.RunError, match=r"was started with other settings \(epochs: 3 -> 9\); resume it with"):
        job._check_output(job.output_dir(config), dataclasses.replace(config, epochs=9), True, False)


def test_resume_allows_what_changes_no_number_and_names_nested_keys(tmp_path, monkeypatch):
    """--offline, another mesh (a preempted job back on other devices), the execution options, the evaluation batch and
    the same data file by another path resume; a changed learning rate is named by its dotted key (it said
    "keys: ['optimizer']")."""
    config = _config(tmp_path, output_dir=str(tmp_path / "runs" / "x"))
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "config.json").write_text(json.dumps(cfg.to_dict(config)))
    monkeypatch.chdir(tmp_path)
    same = dataclasses.replace(config, offline=True, mesh=cfg.MeshConfig(data=1, fsdp=1), scan_layers=True,
                               attention_kernel="xla", eval_batch_size=64,
                               data=dataclasses.replace(config.data, train="./train.tsv"))  # fmt: skip
    job._check_output(job.output_dir(config), same, True, False)
    # the run saved the label names it inferred from the training file; the command that resumes it infers them again
    inferred = dataclasses.replace(config, data=dataclasses.replace(config.data, label_names=("meh", "neg", "pos")))
    (tmp_path / "runs" / "x" / "config.json").write_text(json.dumps(cfg.to_dict(inferred)))
    job._check_output(job.output_dir(config), config, True, False)
    faster = dataclasses.replace(config, optimizer=dataclasses.replace(config.optimizer, learning_rate=1e-3))
    with pytest.raises(job.RunError, match=r"\(optimizer.learning_rate: 5e-05 -> 0.001\)"):
        job._check_output(job.output_dir(config), faster, True, False)


def test_an_output_dir_that_is_a_file_a_preset_or_not_a_run_is_refused_before_anything_loads(tmp_path):
    """A preset as its own output directory had its config.json overwritten by the run's (it no longer loaded); a file
    as the directory failed with a traceback after the data and the model had loaded; a directory of the user's own
    files lost its predictions.jsonl and summary.json."""
    from tests.tiny_preset import write_tiny_preset

    write_tiny_preset(tmp_path / "preset", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"])
    preset_config = (tmp_path / "preset" / "config.json").read_text()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "predictions.jsonl").write_text("my own\n")  # train.py deleted it (and replaced summary.json)
    for out, message in [
        (tmp_path / "preset", r"holds a config.json that is not a train.py run's .* choose another --output-dir"),
        (tmp_path / "mine", r"holds files that are not a train.py run's \(predictions.jsonl\), which this run could"),
        (tmp_path / "afile", r"--output-dir .*afile'.* is a file; pass a directory"),
        (tmp_path / "afile" / "sub", r"--output-dir .*sub'.*afile' is a file; pass a directory"),
    ]:
        for eval_only in (False, True):
            config = _config(tmp_path, preset=str(tmp_path / "preset"), output_dir=str(out), sequence_length=16)
            with pytest.raises(job.RunError, match=message):
                job.run(config, eval_only=eval_only)
    assert (tmp_path / "preset" / "config.json").read_text() == preset_config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "dev.tsv", "mine", "preset", "train.tsv"]
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["predictions.jsonl"]


def test_offline_reaches_the_presets_download_too(tmp_path, monkeypatch):
    """--offline was passed to the dataset's download only: the preset's still tried the network (24 s of retries)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # restored after the test, as the env
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    config = _config(tmp_path, preset="hf://org/missing", offline=True)
    with pytest.raises(FileNotFoundError, match=r"hf://org/missing.*offline"):
        job.run(config)
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(seed=-1), r"seed must be an integer in \[0, 2\*\*31\), got -1"),
        (dict(class_weight="inverse"), r"class_weight must be 'balanced' or '' \(every example weighs 1\), got 'inv"),
        (dict(seed=2**31), r"seed must be an integer in \[0, 2\*\*31\), got 2147483648"),
        (dict(optimizer=cfg.OptimizerConfig(clipnorm=-1.0)), r"optimizer.clipnorm must be positive and finite"),
        (dict(optimizer=cfg.OptimizerConfig(learning_rate=float("inf"))), r"learning_rate must be positive and fin"),
        (dict(optimizer=cfg.OptimizerConfig(weight_decay=float("nan"))), r"weight_decay must be non-negative and fin"),
        (dict(mesh=cfg.MeshConfig(data=1, fsdp=-1)), r"mesh sizes must be positive \(DATA may be -1: .*got 1,-1"),
        (dict(lora_rank=-2), r"lora_rank must be 0 \(no LoRA\) or a positive rank, got -2"),
        (dict(lora_targets=("query",)), r"lora_targets=query needs a lora_rank \(e.g. --config.lora_rank=8\)"),
        (dict(lora_rank=4, lora_targets=("querry",)), r"lora_targets must name layers among \('query', 'key'"),
    ],
)
def test_values_no_run_can_use_are_refused_up_front(tmp_path, changes, message):
    """A seed of 2**31 was refused only after config.json and the first evaluation were written; clipnorm -1 trained
    by gradient ascent and an infinite learning rate to a nan loss, both with status 0."""
    with pytest.raises(cfg.ConfigError, match=message):
        cfg.validate(_config(tmp_path, **changes))


def test_the_datas_class_names_name_the_models_classes(tmp_path):
    """The run's model/ preset and its export carry the training file's class names (they were dropped)."""
    from tests.tiny_preset import write_tiny_preset

    write_tiny_preset(tmp_path / "preset", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"])
    config, _ = job.load_splits(_config(tmp_path, preset=str(tmp_path / "preset"), num_classes=3, sequence_length=16))
    assert job.build_classifier(config).label_names == ("meh", "neg", "pos")


def test_eval_only_label_names_name_a_head_saved_without_names(tmp_path):
    from tests.tiny_preset import write_tiny_preset

    write_tiny_preset(tmp_path / "preset", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "d"])
    config = _config(tmp_path, preset=str(tmp_path / "preset"), sequence_length=16)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, train="", label_names=("neg", "pos")))
    summary = job.run(config, eval_only=True, predict_file=str(tmp_path / "dev.tsv"))
    (row,) = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert row["label"] in ("neg", "pos") and summary["examples"] == {"validation": 1}


def test_names_in_the_validation_file_beside_ids_in_the_training_file_are_refused(tmp_path):
    """Only the training file's labels may name the classes: names inferred from the validation file would be mapped
    to ids in their sorted order, silently, whatever the training file's ids mean."""
    config = _config(tmp_path, num_classes=2)
    (tmp_path / "train.tsv").write_text("sentence\tlabel\na\t1\nb\t0\n")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nd\tpos\ne\tneg\n")
    with pytest.raises(data.DataError, match=r"dev.tsv': column 'label' holds label names such as \['neg', 'pos'\]; "
                                             r"say which integer each name means with --label-names"):  # fmt: skip
        job.load_splits(config)


def _other(value):
    """A value of the same kind as a config.json value, and not equal to it."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list | tuple):
        return [*value, "x"]
    assert value is None, value
    return "x"


def test_a_resume_refuses_every_setting_but_where_it_writes_and_how_it_executes():
    """Each key of a run's config.json is changed in turn: only where the run writes, its Hub access, its mesh, the
    encoder's execution options and the evaluation batch may differ when it resumes; any other (the weight decay, the
    class names, ...) changes what the run computes, and is refused by name."""
    base = cfg.Config(preset="p", data=dataclasses.replace(cfg.Config().data, hub_repo="", label_names=("neg", "pos")))
    resumable = {"output_dir", "offline", "mesh.data", "mesh.fsdp", "scan_layers", "attention_kernel",
                 "eval_batch_size"}  # fmt: skip
    keys = list(job._flat(cfg.to_dict(base)))
    assert len(keys) > 30 and {"optimizer.weight_decay", "data.label_names", "seed"} <= set(keys)
    for key in keys:
        saved = cfg.to_dict(base)
        *parents, leaf = key.split(".")
        node = saved
        for parent in parents:
            node = node[parent]
        node[leaf] = _other(node[leaf])
        changed = [change.split(":")[0] for change in job._changed(saved, base)]
        assert changed == ([] if key in resumable else [key]), key


def test_the_summary_of_a_resumed_run_times_only_the_epochs_it_trained():
    """A resume of a finished run printed "trained 0 epoch(s) ... (per epoch:  s; ...)"."""
    summary = {"before": {}, "after": {}, "examples": {"train": 8}, "train_seconds": 3.0, "model": "m",
               "output_dir": "o", "epochs_this_run": 0, "epoch_seconds": [2.5]}  # fmt: skip
    assert "the run had finished before: nothing was trained; model: m" in job.format_summary(summary)
    summary.update(epochs_this_run=1, epoch_seconds=[0.5, 2.5])  # first, the killed run's last validation
    assert "trained 1 epoch(s) on 8 examples in 3.0 s (per epoch: 2.5 s;" in job.format_summary(summary)


@pytest.mark.parametrize("error", [PermissionError("hf://org/gated is gated"), ConnectionError("hf://org/x: 500")])
def test_hub_access_errors_end_train_py_with_one_line(monkeypatch, capsys, error):
    """A gated repository or a Hub server error (flaxbert's messages) printed a traceback."""
    import train

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(job, "run", fail)
    monkeypatch.setattr(host_memory, "reuse_host_memory", lambda: False)  # this process's malloc stays as it is
    assert train.main(["--preset", "hf://org/x", "--no-compilation-cache"]) == 2
    assert str(error) in capsys.readouterr().err


def test_eval_only_scores_the_presets_trained_head_whatever_its_size(tmp_path, capsys):
    """The default config's num_classes=2 replaced a 3-class model's trained head with a random one (a warning only),
    then scored it and wrote its predictions."""
    import flaxbert

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c"]
    preprocessor = flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(vocabulary), sequence_length=16)
    backbone = flaxbert.BertBackbone(len(vocabulary), num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
                                     max_sequence_length=16)  # fmt: skip
    trained = flaxbert.BertTextClassifier(backbone, num_classes=3, preprocessor=preprocessor, seed=3,
                                          label_names=["neg", "neu", "pos"])  # fmt: skip
    trained.save_to_preset(tmp_path / "model")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\na b\tpos\nc\tneg\nb b c\tneu\n")
    (tmp_path / "new.tsv").write_text("sentence\na c\n")
    files = dict(train="", validation=str(tmp_path / "dev.tsv"), hub_repo="")
    config = cfg.Config(preset=str(tmp_path / "model"), output_dir=str(tmp_path / "out"), sequence_length=16,
                        data=dataclasses.replace(cfg.Config().data, **files))  # fmt: skip
    assert config.num_classes == 2
    summary = job.run(config, eval_only=True, predict_file=str(tmp_path / "new.tsv"))
    assert "scoring" in capsys.readouterr().out
    texts, labels = ["a b", "c", "b b c"], [2, 0, 1]
    expected = trained.evaluate(texts, labels, verbose=0)
    assert summary["after"]["validation"]["loss"] == pytest.approx(expected["loss"], abs=1e-6)
    (row,) = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    logits = trained.predict(["a c"], verbose=0)[0]
    assert row["label"] == ("neg", "neu", "pos")[int(logits.argmax())]
    np.testing.assert_allclose(row["probabilities"], np.exp(logits) / np.exp(logits).sum(), atol=1e-6)

    # Names that contradict the saved ones would rename the classes (accuracy 0.72 read as 0.28); an earlier run's
    # predictions do not outlive a run that writes none.
    swapped = dataclasses.replace(config, data=dataclasses.replace(config.data, label_names=("pos", "neu", "neg")))
    with pytest.raises(job.RunError, match=r"--label-names pos,neu,neg differs from the class names preset .* was "
                                           r"trained with \(neg,neu,pos, in class-id order\)"):  # fmt: skip
        job.run(swapped, eval_only=True)
    job.run(config, eval_only=True)
    assert not (tmp_path / "out" / "predictions.jsonl").exists()
    logged = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["split"] for line in logged] == ["validation"]  # this run's row, not the runs' before

    backbone.save_to_preset(tmp_path / "encoder")  # no head: a random one would be scored
    with pytest.raises(job.RunError, match=r"--eval-only scores a trained classifier, but preset .* has no "
                                           r"classification head"):  # fmt: skip
        job.run(dataclasses.replace(config, preset=str(tmp_path / "encoder")), eval_only=True)


def test_a_preset_without_a_tokenizer_is_one_run_error(tmp_path):
    """from_preset refuses the sequence_length train.py always passes when there is no tokenizer to set it on; the
    run says what train.py needs instead of from_preset's advice to leave sequence_length out."""
    import flaxbert

    backbone = flaxbert.BertBackbone(50, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
                                     max_sequence_length=16)  # fmt: skip
    flaxbert.BertTextClassifier(backbone, num_classes=2).save_to_preset(tmp_path / "no_vocab")
    config = cfg.Config(preset=str(tmp_path / "no_vocab"), sequence_length=16)
    with pytest.raises(job.RunError, match=r"has no tokenizer \(vocabulary\); train.py needs one for raw text"):
        job.build_classifier(config)


def test_resume_without_label_names_keeps_those_the_run_started_with(tmp_path):
    """--label-names on integer labels, then --resume without the flag: the resume was accepted, rewrote the run's
    config.json with no names and saved model/ without them (predictions and exports fell back to ids)."""
    from tests.tiny_preset import write_tiny_preset

    write_tiny_preset(tmp_path / "preset", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d"])
    (tmp_path / "ids.tsv").write_text("sentence\tlabel\na\t1\nb\t0\nc\t1\nd\t0\n")
    config = _config(tmp_path, preset=str(tmp_path / "preset"), num_classes=2, sequence_length=16, epochs=1,
                     batch_size=2)  # fmt: skip
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, train=str(tmp_path / "ids.tsv"),
                                                                  validation=str(tmp_path / "ids.tsv")))  # fmt: skip
    named = dataclasses.replace(config, data=dataclasses.replace(config.data, label_names=("neg", "pos")))
    (tmp_path / "new.tsv").write_text("sentence\nc d\n")
    job.run(named, predict_file=str(tmp_path / "new.tsv"))
    predictions = (tmp_path / "out" / "predictions.jsonl").read_text()
    shutil.rmtree(tmp_path / "out" / "model")  # so that the resume writes it again
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        job.run(config, resume=True)  # the run had finished: the summary says so, without fit's API advice
    assert not [w for w in caught if "already trained" in str(w.message)]
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["data"]["label_names"] == ["neg", "pos"]
    assert (tmp_path / "out" / "predictions.jsonl").read_text() == predictions  # the run's own, kept by its resume
    from flaxbert import TextClassifier

    assert TextClassifier.from_preset(str(tmp_path / "out" / "model")).label_names == ("neg", "pos")


def test_a_metrics_row_cut_short_by_a_kill_is_dropped_and_a_damaged_one_named(tmp_path):
    """A run killed while appending a row left a partial last line, and --resume stopped on a bare JSON error."""
    from flaxbert.run import metrics_log

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"split": "train", "step": 1}\n{"split": "train", "step": 2}\n{"split": "tr')
    assert [row["step"] for row in metrics_log.read(path)] == [1, 2]
    metrics_log.MetricsLog(path, resume_step=1)  # a resume keeps the rows up to its step, and drops the partial one
    assert path.read_text() == '{"split": "train", "step": 1}\n'
    path.write_text('{"split": "train", "step": 1}\n{"split": \n{"split": "train", "step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl line 2 is not a metrics row .*; delete that line"):
        metrics_log.read(path)


def test_resume_with_a_damaged_config_json_goes_on_with_a_warning(tmp_path):
    """A damaged config.json was called "not a train.py run's ... choose another --output-dir": the run's checkpoints
    were given up for lost. Now the resume goes on, with what it can no longer compare said (config.json is also
    written atomically now, so a kill cannot cut it short)."""
    config = _config(tmp_path)
    (tmp_path / "out" / "checkpoints").mkdir(parents=True)
    (tmp_path / "out" / "config.json").write_text('{"preset": "x", "da')
    with pytest.warns(UserWarning, match=r"its config.json is missing or damaged, so the command's settings cannot"):
        run_config = job._check_output(job.output_dir(config), config, True, False)
    assert run_config is None and job._with_saved_label_names(run_config, config) == config  # no names to take
    with pytest.raises(job.RunError, match=r"already holds a run; pass --resume"):
        job._check_output(job.output_dir(config), config, False, False)


def test_a_checkpoint_fit_refuses_is_fixed_in_train_pys_words(tmp_path):
    """fit's refusals end with "pass a new checkpoint_dir", an argument train.py does not have (QA)."""
    from tests.tiny_preset import write_tiny_preset

    write_tiny_preset(tmp_path / "preset", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d"])
    config = _config(tmp_path, preset=str(tmp_path / "preset"), sequence_length=16, epochs=1)
    job.run(config)
    (tmp_path / "out" / "checkpoints" / "validated.json").write_text("garbage")
    with pytest.raises(job.RunError, match=r"validated.json is damaged .* pass a new --output-dir \(or delete ") as e:
        job.run(config, resume=True)
    assert "checkpoint_dir" not in str(e.value)


def test_balanced_class_weight_is_scikit_learns_and_reaches_fit(tmp_path, monkeypatch):
    """`class_weight=balanced`: n / (k x count), k the classes the training split holds (scikit-learn's
    `compute_class_weight("balanced", classes=np.unique(y), y=y)`), passed to fit for the training data."""
    assert job.balanced_class_weight(np.array([1, 1, 1, 0])) == {0: 2.0, 1: pytest.approx(4 / 6)}
    assert job.balanced_class_weight(np.array([2, 0, 2, 2, 0, 2])) == {0: 1.5, 2: 0.75}  # class 1 absent: weighs 1
    import flaxbert
    from tests.tiny_preset import write_tiny_preset

    write_tiny_preset(tmp_path / "preset", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d"])
    config = _config(tmp_path, preset=str(tmp_path / "preset"), sequence_length=16, epochs=1, num_classes=2,
                     class_weight="balanced")  # fmt: skip
    (tmp_path / "train.tsv").write_text("sentence\tlabel\na\tpos\nb\tpos\nc\tpos\nd\tneg\n")
    real, given = flaxbert.TextClassifier.fit, []

    def fit(self, *args, **kwargs):
        given.append(kwargs["class_weight"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(flaxbert.TextClassifier, "fit", fit)
    job.run(config)
    assert given == [{0: 2.0, 1: pytest.approx(4 / 6)}]  # neg (class 0) once, pos (class 1) three times
    assert json.loads((tmp_path / "out" / "config.json").read_text())["class_weight"] == "balanced"


def test_lora_rank_trains_adapters_and_writes_them_apart_and_merged(tmp_path):
    """`--config.lora_rank=2`: the backbone's frozen weights come out as the preset had them (the key kernel), the
    adapted ones merged (the query kernel moved); adapter.lora.h5 holds the adapters alone, in keras-hub's layout, and
    the preset's backbone with them computes what model/'s does."""
    import flaxbert
    from flaxbert.models import lora
    from flaxbert.run.config import LORA_DEFAULT_TARGETS, LORA_TARGETS
    from tests.tiny_preset import write_tiny_preset

    assert lora.TARGETS["BertConfig"] == LORA_TARGETS  # repeated in run/config.py, which imports no jax
    assert lora.DEFAULT_TARGETS == LORA_DEFAULT_TARGETS
    write_tiny_preset(tmp_path / "preset", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d"])
    config = _config(tmp_path, preset=str(tmp_path / "preset"), sequence_length=16, epochs=2, num_classes=2,
                     lora_rank=2, optimizer=cfg.OptimizerConfig(learning_rate=1e-2))  # fmt: skip
    (tmp_path / "train.tsv").write_text("sentence\tlabel\na b\tpos\nb c\tpos\nc d\tneg\nd a\tneg\n")
    summary = job.run(config)
    assert summary["lora_weights"] == str(tmp_path / "out" / "adapter.lora.h5")
    trained = flaxbert.BertTextClassifier.from_preset(tmp_path / "out" / "model")
    original = flaxbert.BertTextClassifier.from_preset(tmp_path / "preset")
    assert trained.backbone.config.lora_rank == 0
    layer, was = (c.backbone.params["transformer_layer_0"]["self_attention"] for c in (trained, original))
    np.testing.assert_array_equal(layer["key"]["kernel"], was["key"]["kernel"])
    assert not np.array_equal(layer["query"]["kernel"], was["query"]["kernel"])
    original.backbone.load_lora_weights(tmp_path / "out" / "adapter.lora.h5")
    assert original.backbone.config.lora_targets == ("query", "value")
    for name in ("query", "value"):  # the biases trained too: compare the kernels
        merged = lora.merged(original.backbone.params)["transformer_layer_0"]["self_attention"][name]["kernel"]
        np.testing.assert_allclose(merged, layer[name]["kernel"], rtol=0, atol=1e-7)


def test_resume_takes_the_same_lora_layers_in_any_order_or_by_keras_hubs_default_name():
    saved = cfg.to_dict(cfg.Config(preset="p", lora_rank=4, lora_targets=("query", "key")))
    assert job._changed(saved, cfg.Config(preset="p", lora_rank=4, lora_targets=("key", "query"))) == []
    default = cfg.to_dict(cfg.Config(preset="p", lora_rank=4))
    assert job._changed(default, cfg.Config(preset="p", lora_rank=4, lora_targets=("value", "query"))) == []
    assert job._changed(default, cfg.Config(preset="p", lora_rank=4, lora_targets=("key",))) == [
        "lora_targets: () -> ('key',)"
    ]


def test_a_run_limits_only_its_training_split_scores_each_split_and_logs_its_schedule(tmp_path, monkeypatch):
    """A sentence-pair run end to end, in-process, with train.py's "recommended" optimizer: `train_limit` cuts the
    training file only; the test split's scores are the test file's; each training row's learning rate is the
    schedule's at the step it trained (ceil(5 / 2) = 3 steps an epoch, so 6 in all); each epoch is timed on its own;
    the predictions name both sentences of a pair."""
    import types

    import flaxbert
    from flaxbert.training import optimizers
    from tests.tiny_preset import write_tiny_preset

    write_tiny_preset(tmp_path / "preset", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d"])
    optimizer = cfg.OptimizerConfig(name="recommended", learning_rate=1e-2, warmup_fraction=0.5, weight_decay=0.05,
                                    clipnorm=0.5)  # fmt: skip
    config = _config(tmp_path, preset=str(tmp_path / "preset"), sequence_length=16, epochs=2, batch_size=2,
                     log_every=1, optimizer=optimizer)  # fmt: skip
    config = dataclasses.replace(config, num_classes=2, data=dataclasses.replace(
        config.data, test=str(tmp_path / "test.tsv"), text_columns=("first", "second"), train_limit=5))  # fmt: skip
    rows = ["a b\tc\tpos", "b\td d\tneg", "c a\tb\tpos", "d\ta\tneg", "a a\tb c\tneg", "b\tb\tpos", "c\td\tneg"]
    header = "first\tsecond\tlabel\n"
    (tmp_path / "train.tsv").write_text(header + "\n".join(rows) + "\n")  # 7 rows, limited to 5
    (tmp_path / "dev.tsv").write_text(header + "\n".join(rows[1:]) + "\n")  # 6 rows, more than the limit
    (tmp_path / "test.tsv").write_text(header + "\n".join(rows[::2]) + "\n")  # other rows than dev's
    (tmp_path / "new.tsv").write_text("first\tsecond\nc c\td\n")
    built = []
    recommended = optimizers.recommended
    monkeypatch.setattr(optimizers, "recommended", lambda *args: built.append(args) or recommended(*args))
    monkeypatch.setattr(job, "time", types.SimpleNamespace(perf_counter=iter(range(0, 1000, 10)).__next__))
    summary = job.run(config, predict_file=str(tmp_path / "new.tsv"))

    assert summary["examples"] == {"train": 5, "validation": 6, "test": 4}
    assert built == [(6, 1e-2, 0.5, 0.05, 0.5)]  # 6 steps: the schedule decays to 0 at the run's last step
    schedule = optimizers.warmup_linear_decay(6, 1e-2, 0.5)
    logged = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in logged if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert [r["learning_rate"] for r in train] == [pytest.approx(float(schedule(step))) for step in range(6)]
    assert summary["epoch_seconds"] == [10, 10]  # a clock read at the start and at each epoch's validation row

    model = flaxbert.TextClassifier.from_preset(tmp_path / "out" / "model")
    for split, file in (("validation", "dev.tsv"), ("test", "test.tsv")):
        read = data.read_split(str(tmp_path / file), ("first", "second"), "label", ("neg", "pos"))
        scores = model.evaluate(read.texts, read.labels, verbose=0)
        assert summary["after"][split] == pytest.approx(scores, abs=1e-6), split
    (row,) = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert row["text"] == ["c c", "d"]
