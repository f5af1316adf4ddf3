"""One `train.py` run, in named phases: data -> model -> evaluate -> fit -> evaluate -> save -> predict -> summary.

Everything a run produces goes to its output directory: `config.json` (the config it ran with), `metrics.jsonl`,
`curves.png`, `checkpoints/` (Orbax, for `--resume`), `model/` (the fine-tuned native preset), `summary.json` and,
with a predict file, `predictions.jsonl`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

from flaxbert import data as datasets
from flaxbert.parallel.mesh import mesh_shape, warning_stacklevel
from flaxbert.presets import json_file
from flaxbert.run import curves
from flaxbert.run.config import LORA_DEFAULT_TARGETS, Config, ConfigError, to_dict
from flaxbert.run.metrics_log import MetricsLog, read
from flaxbert.training import optimizers


class RunError(ValueError):
    """A run that cannot start as asked (output directory, resume, data source); the message says how to fix it."""


def output_dir(config: Config) -> Path:
    return Path(config.output_dir or Path("runs") / Path(config.preset.rstrip("/")).name)


def run(config: Config, *, resume: bool = False, eval_only: bool = False, predict_file: str = "") -> dict:
    """Runs `config`; returns the summary (also written to summary.json and printed)."""
    out = output_dir(config)
    writer = jax.process_index() == 0
    mesh = _mesh(config)
    if config.offline:
        _go_offline()
    # Read now, not after training: a bad predict file must not cost a run.
    to_predict = datasets.read_split(predict_file, config.data.text_columns, None) if predict_file else None
    run_config = _check_output(out, config, resume, eval_only)
    if resume:
        config = _with_saved_label_names(run_config, config)
    if eval_only:  # the preset's trained head decides the classes (and names them, where it saved names)
        classifier = build_classifier(config, keep_head=True)
        config = _with_head(config, classifier)
        if config.data.label_names and not classifier.label_names:  # --label-names for a head saved without names
            classifier = build_classifier(config, keep_head=True, name_classes=True)
        config, splits = load_splits(config, need_train=False)
    else:  # the data first: a bad file must not cost a model load
        config, splits = load_splits(config)
        classifier = build_classifier(config)
        if config.lora_rank:
            _enable_lora(classifier, config)
    if writer:
        out.mkdir(parents=True, exist_ok=True)
        json_file.write(out / "config.json", to_dict(config))
        if not resume and to_predict is None:  # an earlier run's, which this run's summary would not explain
            (out / "predictions.jsonl").unlink(missing_ok=True)
    summary = {"preset": config.preset, "output_dir": str(out), "examples": {k: len(v) for k, v in splits.items()}}
    if eval_only:
        classifier.compile(mesh=mesh)
        log = MetricsLog(out / "metrics.jsonl", resume_step=None, enabled=writer)
        summary["after"] = evaluate_splits(classifier, splits, config, log, step=0, epoch=0.0)
    else:
        summary.update(train(classifier, splits, config, mesh, out, resume, writer))
    if to_predict is not None:
        summary["predictions"] = write_predictions(classifier, config, to_predict, out / "predictions.jsonl", writer)
    if writer:
        if not curves.plot(read(out / "metrics.jsonl"), out / "curves.png", title=f"{config.preset} ({out})"):
            print("no curves.png: matplotlib is not installed (pip install 'flaxbert[train]').")
        json_file.write(out / "summary.json", summary)
        print(format_summary(summary))
    return summary


# -- phases ------------------------------------------------------------------------------------------------------------
def load_splits(config: Config, need_train: bool = True) -> tuple[Config, dict[str, datasets.Split]]:
    """train (unless evaluating only), validation and, when named, test; labels checked against num_classes.

    Returns the config with `data.label_names` filled in when the training file's labels are names (read once).
    """
    cfg = config.data
    wanted = {"train": cfg.train if need_train else "", "validation": cfg.validation, "test": cfg.test}
    names, splits = cfg.label_names, {}
    for split, name in wanted.items():
        if not name:
            continue
        limit = cfg.train_limit if split == "train" else 0
        read = datasets.read_split(_locate(config, name), cfg.text_columns, cfg.label_column, names, limit,
                                   infer_label_names=split == "train")  # fmt: skip
        names = read.label_names
        if split == "test" and (read.labels < 0).all():
            continue  # an unlabelled test split (GLUE's) cannot be scored
        datasets.check_labels(read, config.num_classes, cfg.label_column)
        splits[split] = read
    if names and len(names) != config.num_classes:  # predictions name every class
        given = "--label-names gives" if cfg.label_names else "the training file's labels are"
        raise datasets.DataError(
            f"{given} {len(names)} names {list(names)}, but num_classes={config.num_classes}: pass --label-names "
            f"with one name per class, in class-id order (or --num-classes {len(names)})."
        )
    if names != cfg.label_names:
        config = dataclasses.replace(config, data=dataclasses.replace(cfg, label_names=names))
    return config, splits


def _locate(config: Config, name: str) -> str:
    if not config.data.hub_repo:
        return name
    try:
        return datasets.hub_file(config.data.hub_repo, name, config.data.hub_revision, config.offline)
    except datasets.HubUnavailable as error:
        raise RunError(f"{error}. Train from local files instead: {local_files_flags(config)}") from None


def local_files_flags(config: Config) -> str:
    """What to add to the command that met an uncached Hub dataset: its --config and overrides stay as they were."""
    columns = ",".join(config.data.text_columns)
    return (
        f"run the same command with --train-file PATH/train.tsv --validation-file PATH/dev.tsv "
        f"--text-column {columns} --label-column {config.data.label_column} added"
    )


def build_classifier(config: Config, keep_head: bool = False, name_classes: bool | None = None):
    """The preset's classifier with a `config.num_classes` head (a new one unless the preset's has that size), or with
    `keep_head` the preset's trained head whatever its size (`--eval-only`: a preset without one is refused).

    `name_classes`: whether the config's `data.label_names` name the head's classes (default: for a new head; a kept
    one keeps the names it was saved with)."""
    from flaxbert.tasks import TextClassifier
    from flaxbert.tasks.loading import NoHeadError, NoTokenizerError

    try:
        name_classes = not keep_head if name_classes is None else name_classes
        names = config.data.label_names if name_classes else ()
        classifier = _from_preset(TextClassifier, config, None if keep_head else config.num_classes, names)
    except NoHeadError:  # only with keep_head: otherwise num_classes is given
        raise RunError(
            f"--eval-only scores a trained classifier, but preset {config.preset!r} has no classification head "
            "(its head would be random): fine-tune it first, then pass the run's model/ directory as --preset."
        ) from None
    except NoTokenizerError:  # from_preset refuses the sequence_length it would have nothing to set on
        raise RunError(
            f"preset {config.preset!r} has no tokenizer (vocabulary); train.py needs one for raw text: add the "
            "model's vocab.txt or tokenizer.json to the preset directory."
        ) from None
    classifier.bucket = config.bucket
    return classifier


def _from_preset(cls, config: Config, num_classes: int | None, label_names: tuple[str, ...]):
    return cls.from_preset(
        config.preset,
        num_classes=num_classes,
        sequence_length=config.sequence_length,
        dtype=config.precision,
        seed=config.seed,
        scan_layers=config.scan_layers,
        attention_kernel=config.attention_kernel,
        # the data's class names (a kept head's saved ones otherwise) go into model/ and the predictions
        **({"label_names": label_names} if label_names else {}),
    )


def _enable_lora(classifier, config: Config) -> None:
    """LoRA adapters on the preset's backbone (`--config.lora_rank`), in train.py's words where refused."""
    try:
        classifier.backbone.enable_lora(config.lora_rank, list(config.lora_targets) or None)
    except ValueError as error:  # a target this architecture lacks (DistilBERT's pooled_dense)
        raise ConfigError(f"--config.lora_targets: {error}") from None


def _with_head(config: Config, classifier) -> Config:
    """`config` with the classes of the head `--eval-only` scores: its size, and its names where the config has none.
    Names that differ from those the head was saved with are refused: they would rename its classes."""
    if classifier.num_classes != config.num_classes:
        print(f"--eval-only: scoring {config.preset}'s trained {classifier.num_classes}-class head "
              f"(the config's num_classes={config.num_classes} is for training a new one).")  # fmt: skip
    saved = tuple(classifier.label_names or ())
    if config.data.label_names and saved and tuple(config.data.label_names) != saved:
        raise RunError(
            f"--label-names {','.join(config.data.label_names)} differs from the class names preset "
            f"{config.preset!r} was trained with ({','.join(saved)}, in class-id order); leave --label-names out "
            "to use the saved ones."
        )
    names = config.data.label_names or saved
    return dataclasses.replace(config, num_classes=classifier.num_classes,
                               data=dataclasses.replace(config.data, label_names=names))  # fmt: skip


def make_optimizer(config: Config, num_steps: int):
    """The optax transformation and its learning-rate schedule (step -> rate, for the metrics rows)."""
    opt = config.optimizer
    if opt.name == "keras_default":
        return optimizers.keras_default(opt.learning_rate), lambda step: opt.learning_rate
    tx = optimizers.recommended(num_steps, opt.learning_rate, opt.warmup_fraction, opt.weight_decay, opt.clipnorm)
    return tx, optimizers.warmup_linear_decay(num_steps, opt.learning_rate, opt.warmup_fraction)


def balanced_class_weight(labels: np.ndarray) -> dict[int, float]:
    """scikit-learn's "balanced" class weights for class ids `labels`: n / (k x count of the class), k the classes
    present, so that the examples' weights average 1 and each present class weighs n / k in all."""
    ids, counts = np.unique(labels, return_counts=True)
    return {int(i): len(labels) / (len(ids) * int(count)) for i, count in zip(ids, counts, strict=True)}


def train(classifier, splits, config: Config, mesh, out: Path, resume: bool, writer: bool) -> dict:
    train_split, validation = splits["train"], splits["validation"]
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    tx, schedule = make_optimizer(config, steps_per_epoch * config.epochs)
    classifier.compile(optimizer=tx, mesh=mesh)
    resume_step = _resume_step(out / "checkpoints") if resume else None
    log = MetricsLog(out / "metrics.jsonl", resume_step=resume_step, enabled=writer)

    epoch_seconds, epoch_began = [], 0.0

    def on_log(row):
        nonlocal epoch_began
        if row["split"] == "train":
            row = dict(row, learning_rate=float(schedule(row["step"] - 1)))
        else:  # a validation row closes an epoch: its wall time includes compiling new batch shapes and evaluating
            now = time.perf_counter()
            epoch_seconds.append(now - epoch_began)
            epoch_began = now
            row = dict(row, epoch_seconds=epoch_seconds[-1])
        log.write(row)

    if resume_step is None:
        before = evaluate_splits(classifier, {"validation": validation}, config, log, step=0, epoch=0.0)
    else:
        before = _logged(out / "metrics.jsonl", step=0)
    began = epoch_began = time.perf_counter()
    try:
        with warnings.catch_warnings():  # a finished run resumed: the summary says so (the warning gives API fixes)
            warnings.filterwarnings("ignore", message=r"checkpoint_dir .* holds this run already trained")
            history = classifier.fit(
                train_split.texts,
                train_split.labels,
                batch_size=config.batch_size,
                epochs=config.epochs,
                validation_data=(validation.texts, validation.labels),
                validation_batch_size=config.eval_batch_size,
                seed=config.seed,
                checkpoint_dir=out / "checkpoints",
                checkpoint_every=config.checkpoint_every or None,
                on_log=on_log,
                log_every=config.log_every,
                group_by_length=config.group_by_length,
                class_weight=balanced_class_weight(train_split.labels) if config.class_weight == "balanced" else None,
                verbose=1,  # train.py's bar (rate and ETA) in a job's log too, where "auto" would print per epoch
            )
    except ValueError as error:  # a checkpoint of another run, or a damaged one: fix it in train.py's words
        fix = f"a new --output-dir (or delete {out}, its run, to start it again)"
        message = re.sub(r"(pass|use) a new checkpoint_dir", lambda m: f"{m.group(1)} {fix}", str(error))
        raise RunError(message) from None
    except SystemExit as stop:  # SIGTERM: fit saved a checkpoint and exits with status 0, as preemption wants
        if stop.code in (0, None) and writer:
            said = f"a checkpoint is saved in {out / 'checkpoints'}: run the same command with --resume to continue"
            print(f"train.py: stopped by SIGTERM; {said} (no model/ or summary.json yet).", file=sys.stderr, flush=True)
        raise
    except KeyboardInterrupt:  # Ctrl-C: fit saved a checkpoint after its step (a second Ctrl-C: it did not)
        if writer:
            latest = _resume_step(out / "checkpoints")
            said = (
                f"the latest checkpoint, step {latest}, is in {out / 'checkpoints'}: run the same command with "
                "--resume to continue from it"
                if latest is not None
                else "no checkpoint was saved yet: the same command starts the run again"
            )
            print(f"train.py: stopped by Ctrl-C; {said}.", file=sys.stderr, flush=True)
        raise SystemExit(130) from None  # the shell's status for a command stopped by SIGINT
    seconds = time.perf_counter() - began
    end_step = steps_per_epoch * config.epochs
    if history.epoch:
        last = {key: history.history[f"val_{key}"][-1] for key in ("loss", "accuracy")}
        after = {"validation": last}
    else:  # resumed after the last epoch had finished: its scores are in the log (fit validated a killed run's)
        logged = _logged(out / "metrics.jsonl", step=end_step)
        after = (
            {"validation": logged["validation"]}
            if "validation" in logged
            else evaluate_splits(classifier, {"validation": validation}, config, log, end_step, config.epochs)
        )
    if "test" in splits:
        after.update(evaluate_splits(classifier, {"test": splits["test"]}, config, log, end_step, config.epochs))
    if not (out / "model").exists():  # there already (written whole, atomically): a resumed run that had finished
        classifier.save_to_preset(out / "model")
    adapters = {}
    if config.lora_rank:  # on every process: the adapters are gathered from all of them (process 0 writes)
        classifier.backbone.save_lora_weights(out / "adapter.lora.h5")
        adapters["lora_weights"] = str(out / "adapter.lora.h5")
    epochs_run = len(history.epoch)
    return {
        **adapters,
        "before": before,
        "after": after,
        "epochs": config.epochs,
        "epochs_this_run": epochs_run,
        "train_seconds": seconds,
        "epoch_seconds": epoch_seconds,
        "model": str(out / "model"),
    }


def evaluate_splits(classifier, splits, config: Config, log: MetricsLog, step: int, epoch: float) -> dict:
    scores = {}
    for name, split in splits.items():
        scores[name] = classifier.evaluate(split.texts, split.labels, batch_size=config.eval_batch_size, verbose=0)
        log.write(dict(split=name, step=step, epoch=float(epoch), **scores[name]))
    return scores


def write_predictions(classifier, config: Config, split: datasets.Split, target: Path, writer: bool) -> dict:
    """Labels and class probabilities for every row of `split` (a predict file read without its labels)."""
    logits = classifier.predict(split.texts, batch_size=config.eval_batch_size, verbose=0)
    probs = np.asarray(logits if classifier.activation == "softmax" else jax.nn.softmax(logits, axis=-1))
    names = classifier.label_names
    if writer:
        texts = split.texts if not isinstance(split.texts, tuple) else list(zip(*split.texts, strict=True))
        with open(target, "w") as f:
            for text, p in zip(texts, probs, strict=True):
                label = int(np.argmax(p))
                row = {"text": text, "label": names[label] if names else label, "probabilities": p.tolist()}
                f.write(json.dumps(row) + "\n")
    return {"file": str(target), "rows": len(split)}


# -- helpers -----------------------------------------------------------------------------------------------------------
def _mesh(config: Config):
    fix = "set --mesh DATA,FSDP with DATA x FSDP equal to the device count, or DATA=-1"
    try:
        return mesh_shape(config.mesh.data, config.mesh.fsdp, jax.device_count(), fix)
    except ValueError as e:
        raise ConfigError(f"--mesh {config.mesh.data},{config.mesh.fsdp}: {e}") from None


def _resume_step(directory: Path) -> int | None:
    from flaxbert import checkpoint

    if not directory.exists():
        return None
    mngr = checkpoint.manager(directory)
    step = mngr.latest_step()
    mngr.close()
    return step


def _logged(path: Path, step: int) -> dict:
    return {row["split"]: {"loss": row["loss"], "accuracy": row["accuracy"]}
            for row in read(path) if row["step"] == step and row["split"] != "train"}  # fmt: skip


def _check_output(out: Path, config: Config, resume: bool, eval_only: bool) -> dict | None:
    """Refuses an output directory this run cannot write, or would overwrite what is not a run of its own, before
    any data or model is loaded; returns the config.json of the run the directory holds (`_run_config`)."""
    if resume and eval_only:
        raise RunError("--resume continues a training run and --eval-only trains nothing: pass one of them.")
    for place in (out, *out.absolute().parents):
        if place.exists() and not place.is_dir():
            raise RunError(f"--output-dir {str(out)!r}: {str(place)!r} is a file; pass a directory.")
    existing = next(place for place in (out, *out.absolute().parents) if place.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(f"--output-dir {str(out)!r}: {str(existing)!r} is not writable; pass a directory you can write.")
    saved, run_config = out / "config.json", _run_config(out / "config.json")
    if resume and (out / "checkpoints").is_dir() and run_config is None:
        warnings.warn(
            f"--resume: the run in {str(out)!r} has checkpoints but its config.json is missing or damaged, so the "
            "command's settings cannot be compared with the run's; fit still refuses a checkpoint of another model, "
            "data, batch size or seed. config.json is written again.",
            stacklevel=warning_stacklevel(2),
        )
        return None
    if not (resume or eval_only) and (out / "checkpoints").exists():
        raise RunError(
            f"{str(out)!r} already holds a run; pass --resume to continue it, or choose another --output-dir."
        )
    if out.is_dir() and not saved.exists() and any(out.iterdir()):  # every run writes config.json first
        held = sorted(p.name for p in out.iterdir())
        raise RunError(
            f"--output-dir {str(out)!r} holds files that are not a train.py run's ({', '.join(held[:3])}"
            f"{', ...' if len(held) > 3 else ''}), which this run could overwrite; choose a new or empty --output-dir."
        )
    if saved.is_file() and run_config is None:
        raise RunError(
            f"--output-dir {str(out)!r} holds a config.json that is not a train.py run's (a preset's, or another "
            "program's), which this run would overwrite; choose another --output-dir."
        )
    if eval_only:
        if (out / "checkpoints").exists():
            raise RunError(
                f"{str(out)!r} holds a training run, whose config, metrics and summary --eval-only would overwrite; "
                "choose another --output-dir."
            )
        return run_config
    if resume:
        if not saved.exists():
            raise RunError(f"--resume: {str(out)!r} holds no run (no config.json); start it without --resume.")
        changed = _changed(run_config, config)
        if changed:
            raise RunError(
                f"--resume: the run in {str(out)!r} was started with other settings ({'; '.join(changed)}); resume "
                "it with the same ones, or start a new run in another --output-dir."
            )
    return run_config


# What a resumed run may change: where it writes (the directory being resumed is the output directory, however it is
# spelled or wherever it moved), whether it may reach the Hub, and how it runs (the mesh: a preempted job may come back
# on other devices, which changes float32 rounding only; the encoder's execution options; the evaluation batch size).
_RESUMABLE = {"output_dir", "offline", "mesh.data", "mesh.fsdp", "scan_layers", "attention_kernel", "eval_batch_size"}
_DATA_FILES = ("data.train", "data.validation", "data.test")


def _lora_layers(targets, flat: dict) -> tuple[str, ...]:
    """The layers a run's LoRA adapts: its `lora_targets` as a set, keras-hub's default where it names none."""
    return tuple(sorted(targets or (LORA_DEFAULT_TARGETS if flat.get("lora_rank") else ())))


def _changed(saved: dict, config: Config) -> list[str]:
    """The settings of `config` that differ from the run's saved config.json, as "key: then -> now"."""
    then, now = _flat(saved), _flat(to_dict(config))
    local = not config.data.hub_repo
    changed = []
    for key in sorted(then.keys() | now.keys()):
        a, b = then.get(key), now.get(key)
        if key in _RESUMABLE or a == b:
            continue
        if key == "lora_targets" and _lora_layers(a, then) == _lora_layers(b, now):
            continue  # the same layers, named in another order, or keras-hub's default named
        if key == "data.label_names" and not b:  # inferred from the training file again (saved after inference);
            continue  # other labels would change the data, which fit's checkpoint compares
        if local and key in _DATA_FILES and a and b and os.path.realpath(a) == os.path.realpath(b):
            continue  # the same file reached by another path
        if key == "preset" and a and b and os.path.isdir(a) and os.path.realpath(a) == os.path.realpath(b):
            continue  # the same local preset directory
        changed.append(f"{key}: {a!r} -> {b!r}")
    return changed


def _with_saved_label_names(run_config: dict | None, config: Config) -> Config:
    """A resumed run without --label-names goes on with the class names it was started with (`run_config`, its
    config.json), given or inferred (it used to save its model without the names a --label-names flag had given)."""
    if run_config is None:  # lost or damaged (the resume goes on, with a warning)
        return config
    saved = tuple(run_config["data"].get("label_names") or ())
    if config.data.label_names or not saved:
        return config
    return dataclasses.replace(config, data=dataclasses.replace(config.data, label_names=saved))


def _flat(tree: dict, prefix: str = "") -> dict:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`; lists (JSON's tuples) as tuples, so they compare as the config's do."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return flat


def _run_config(path: Path) -> dict | None:
    """The config.json train.py wrote at `path` (by any version: its top-level sections), or None where there is
    none: missing, damaged, or another program's."""
    try:
        saved = json.loads(path.read_text())
    except (ValueError, OSError):  # JSON errors are ValueErrors
        return None
    is_run = isinstance(saved, dict) and {"preset", "data", "optimizer", "mesh"} <= saved.keys()
    return saved if is_run and isinstance(saved["data"], dict) else None


def _go_offline() -> None:
    """`--offline` for every Hub access of the run, the preset's too, as HF_HUB_OFFLINE=1 would be."""
    import huggingface_hub.constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = True


def format_summary(summary: dict) -> str:
    lines = [f"\n{'split':<12}{'phase':<8}{'loss':>10}{'accuracy':>10}"]
    for phase in ("before", "after"):
        for split, scores in (summary.get(phase) or {}).items():
            lines.append(f"{split:<12}{phase:<8}{scores['loss']:>10.4f}{scores['accuracy']:>10.4f}")
    if "train_seconds" in summary and not summary["epochs_this_run"]:
        lines.append(f"the run had finished before: nothing was trained; model: {summary['model']}")
    elif "train_seconds" in summary:
        # the epochs trained here (a resume that first validates a killed run's last epoch times that row too)
        per_epoch = ", ".join(f"{s:.1f}" for s in summary["epoch_seconds"][-summary["epochs_this_run"] :])
        lines.append(
            f"trained {summary['epochs_this_run']} epoch(s) on {summary['examples']['train']:,} examples in "
            f"{summary['train_seconds']:.1f} s (per epoch: {per_epoch} s; the first includes compiling); "
            f"model: {summary['model']}"
        )
    if "lora_weights" in summary:
        lines.append(f"LoRA adapters alone (keras-hub's .lora.h5): {summary['lora_weights']}; model/ has them merged")
    lines.append(f"outputs: {summary['output_dir']}")
    return "\n".join(lines)
