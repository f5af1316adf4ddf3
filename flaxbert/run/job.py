"""One `train.py` run, in named phases: data -> model -> evaluate -> fit -> evaluate -> save -> predict -> summary.

Everything a run produces goes to its output directory: `config.json` (the config it ran with), `metrics.jsonl`,
`curves.png`, `checkpoints/` (Orbax, for `--resume`), `model/` (the fine-tuned native preset), `summary.json` and,
with a predict file, `predictions.jsonl`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import jax
import numpy as np

from flaxbert import data as datasets
from flaxbert.run import curves
from flaxbert.run.config import Config, ConfigError, from_dict, to_dict
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
    # Read now, not after training: a bad predict file must not cost a run.
    to_predict = datasets.read_split(predict_file, config.data.text_columns, None) if predict_file else None
    _check_output(out, config, resume, eval_only)
    if eval_only:  # the preset's trained head decides the classes (and names them, where it saved names)
        classifier = build_classifier(config, keep_head=True)
        config, splits = load_splits(_with_head(config, classifier), need_train=False)
    else:  # the data first: a bad file must not cost a model load
        config, splits = load_splits(config)
        classifier = build_classifier(config)
    if writer:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(config), indent=2) + "\n")
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
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
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
        raise RunError(f"{error}. Train from local files instead: {local_files_command(config)}") from None


def local_files_command(config: Config) -> str:
    columns = ",".join(config.data.text_columns)
    return (
        f"python train.py --preset {config.preset} --train-file PATH/train.tsv --validation-file PATH/dev.tsv "
        f"--text-column {columns} --label-column {config.data.label_column}"
    )


def build_classifier(config: Config, keep_head: bool = False):
    """The preset's classifier with a `config.num_classes` head (a new one unless the preset's has that size), or with
    `keep_head` the preset's trained head whatever its size (`--eval-only`: a preset without one is refused)."""
    from flaxbert.tasks import TextClassifier
    from flaxbert.tasks.loading import NoHeadError, NoTokenizerError

    try:
        classifier = _from_preset(TextClassifier, config, None if keep_head else config.num_classes)
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


def _from_preset(cls, config: Config, num_classes: int | None):
    return cls.from_preset(
        config.preset,
        num_classes=num_classes,
        sequence_length=config.sequence_length,
        dtype=config.precision,
        seed=config.seed,
        scan_layers=config.scan_layers,
        attention_kernel=config.attention_kernel,
        # the data's class names (a kept head's saved ones otherwise) go into model/ and the predictions
        **({"label_names": config.data.label_names} if config.data.label_names else {}),
    )


def _with_head(config: Config, classifier) -> Config:
    """`config` with the classes of the head `--eval-only` scores: its size, and its names where the config has none."""
    if classifier.num_classes != config.num_classes:
        print(f"--eval-only: scoring {config.preset}'s trained {classifier.num_classes}-class head "
              f"(the config's num_classes={config.num_classes} is for training a new one).")  # fmt: skip
    names = config.data.label_names or tuple(classifier.label_names or ())
    return dataclasses.replace(config, num_classes=classifier.num_classes,
                               data=dataclasses.replace(config.data, label_names=names))  # fmt: skip


def make_optimizer(config: Config, num_steps: int):
    """The optax transformation and its learning-rate schedule (step -> rate, for the metrics rows)."""
    opt = config.optimizer
    if opt.name == "keras_default":
        return optimizers.keras_default(opt.learning_rate), lambda step: opt.learning_rate
    tx = optimizers.recommended(num_steps, opt.learning_rate, opt.warmup_fraction, opt.weight_decay, opt.clipnorm)
    return tx, optimizers.warmup_linear_decay(num_steps, opt.learning_rate, opt.warmup_fraction)


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
    history = classifier.fit(
        train_split.texts,
        train_split.labels,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(validation.texts, validation.labels),
        seed=config.seed,
        checkpoint_dir=out / "checkpoints",
        checkpoint_every=config.checkpoint_every or None,
        on_log=on_log,
        log_every=config.log_every,
        group_by_length=config.group_by_length,
    )
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
    epochs_run = len(history.epoch)
    return {
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
    fsdp = config.mesh.fsdp
    data = config.mesh.data if config.mesh.data != -1 else max(1, jax.device_count() // fsdp)
    if data * fsdp != jax.device_count():
        raise ConfigError(
            f"mesh data={data} x fsdp={fsdp} needs {data * fsdp} devices, but {jax.device_count()} are visible; "
            "set --mesh DATA,FSDP with DATA x FSDP equal to the device count (or DATA=-1)."
        )
    return (data, fsdp)


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


def _check_output(out: Path, config: Config, resume: bool, eval_only: bool) -> None:
    saved = out / "config.json"
    if eval_only:
        if (out / "checkpoints").exists():
            raise RunError(
                f"{str(out)!r} holds a training run, whose config, metrics and summary --eval-only would overwrite; "
                "choose another --output-dir."
            )
        return
    if resume:
        if not saved.exists():
            raise RunError(f"--resume: {str(out)!r} holds no run (no config.json); start it without --resume.")
        # The directory being resumed is the output directory, however it is spelled (or wherever it moved).
        before = dataclasses.replace(from_dict(json.loads(saved.read_text())), output_dir=config.output_dir)
        if before != config:
            changed = [k for k, v in to_dict(config).items() if to_dict(before).get(k) != v]
            raise RunError(f"--resume: the config differs from the run in {str(out)!r} (keys: {changed}).")
    elif (out / "checkpoints").exists():
        raise RunError(
            f"{str(out)!r} already holds a run; pass --resume to continue it, or choose another --output-dir."
        )


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
    lines.append(f"outputs: {summary['output_dir']}")
    return "\n".join(lines)
