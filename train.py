"""Fine-tune a BERT-family text classifier: `python train.py --preset bert_tiny_en_uncased_sst2`.

Flags -> config -> `flaxbert.run.job.run`. Start from a recipe with `--config configs/<recipe>.py` (default:
configs/sst2.py, GLUE SST-2 with keras-hub's defaults), override any field with `--config.KEY=VALUE` (e.g.
`--config.optimizer.name=recommended`) or with the common flags below. See README.md, "Training from the command line".
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, as for every other bad command line (argparse prints its usage first)
        self.exit(2, f"{self.prog}: error: {message} (see python train.py --help)\n")


def parser() -> argparse.ArgumentParser:
    epilog = (
        "Any config field is set with --config.KEY=VALUE (e.g. --config.optimizer.name=recommended); an unknown key "
        "lists the close ones. FLAXBERT_TRACEBACK=1 prints the traceback above a one-line error."
    )
    p = _Parser(description=__doc__.splitlines()[0], epilog=epilog, allow_abbrev=False)
    p.add_argument(
        "--config",
        default=str(HERE / "configs" / "sst2.py"),
        help="a Python config file with get_config(), or a run's config.json",
    )
    p.add_argument("--preset", help="a built-in name, hf://org/repo, kaggle:// handle or local directory")
    data = p.add_argument_group("local data (instead of the config's Hub dataset)")
    data.add_argument("--train-file", help="TSV, CSV, JSONL, parquet, or .txt with 'LABEL text' lines")
    data.add_argument("--validation-file", help="scored before and after training, and after each epoch")
    data.add_argument("--test-file", help="scored after training")
    data.add_argument("--text-column", help="the text column; two comma-separated names for sentence pairs")
    data.add_argument("--label-column", help="the column of class ids or names (default: the config's)")
    data.add_argument("--label-names", help="comma-separated class names, in class-id order, for labels given as names")
    data.add_argument("--num-classes", type=int, help="the number of classes (default: the config's)")
    common = p.add_argument_group("common overrides")
    common.add_argument("--epochs", type=int, help="passes over the training data")
    common.add_argument("--batch-size", type=int, help="the global training batch, over every device")
    common.add_argument("--learning-rate", type=float, help="the learning rate (recommended: the peak)")
    common.add_argument("--sequence-length", type=int, help="the padded token length texts are cut to")
    common.add_argument("--precision", choices=["float32", "bfloat16"], help="the compute dtype (params stay float32)")
    common.add_argument("--mesh", help="DATA,FSDP device-mesh shape, e.g. 1,8 for FSDP over 8 devices (-1: the rest)")
    common.add_argument("--seed", type=int, help="the data order, dropout and any new head's init")
    common.add_argument("--output-dir", help="default: the config's output_dir, else runs/<the last part of --preset>")
    run = p.add_argument_group("what to run")
    run.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its last checkpoint")
    run.add_argument("--eval-only", action="store_true", help="evaluate the preset on validation (and test) only")
    run.add_argument("--predict-file", help="write labels and probabilities for this file's texts to predictions.jsonl")
    run.add_argument("--offline", action="store_true", help="use only the Hugging Face cache (like HF_HUB_OFFLINE=1)")
    cache = "$FLAXBERT_COMPILATION_CACHE or ~/.cache/flaxbert/jax"
    run.add_argument("--no-compilation-cache", action="store_true", help=f"skip the persistent XLA cache ({cache})")
    run.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize() first (multi-host)")
    return p


FLAG_KEYS = {  # flag -> config key
    "preset": "preset",
    "num_classes": "num_classes",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "learning_rate": "optimizer.learning_rate",
    "sequence_length": "sequence_length",
    "precision": "precision",
    "seed": "seed",
    "output_dir": "output_dir",
    "text_column": "data.text_columns",
    "label_column": "data.label_column",
    "label_names": "data.label_names",
}


def build_config(args, extra: list[str]):
    from flaxbert.run import config as cfg

    config = cfg.load(args.config)
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag)
        if value is not None:
            config = cfg.override(config, key, str(value))
    if args.mesh is not None:
        sizes = args.mesh.split(",")
        if len(sizes) > 2 or not all(s.strip().lstrip("-").isdigit() for s in sizes):
            raise cfg.ConfigError(
                f"--mesh takes DATA,FSDP (two whole numbers, e.g. 1,8; DATA may be -1), got {args.mesh!r}"
            )
        config = cfg.override(
            cfg.override(config, "mesh.data", sizes[0]), "mesh.fsdp", sizes[1] if len(sizes) > 1 else "1"
        )
    if args.offline:
        config = dataclasses.replace(config, offline=True)
    if args.train_file or args.validation_file or args.test_file:
        if not (args.validation_file and (args.train_file or args.eval_only)):
            raise cfg.ConfigError("local data needs --validation-file, and --train-file unless --eval-only")
        files = (args.train_file or "", args.validation_file, args.test_file or "")
        local = dict(zip(("train", "validation", "test"), files, strict=True), hub_repo="")
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, **local))
    for key, value in _dotted(extra):
        config = cfg.override(config, key, value)
    cfg.validate(config, training=not args.eval_only)
    return config


def _dotted(extra: list[str]):
    """`--config.a.b=v` or `--config.a.b v` pairs; anything else is an unknown flag."""
    from flaxbert.run.config import ConfigError

    items, i = [], 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--config."):
            raise ConfigError(f"unknown flag {arg!r} (see python train.py --help; config fields: --config.KEY=VALUE)")
        key, eq, value = arg[len("--config.") :].partition("=")
        if not eq:
            if i + 1 >= len(extra):
                raise ConfigError(f"{arg} needs a value: {arg}=VALUE")
            value, i = extra[i + 1], i + 1
        items.append((key, value))
        i += 1
    return items


def main(argv=None) -> int:
    args, extra = parser().parse_known_args(argv)
    from flaxbert import host_memory

    if not host_memory.accelerator_installed():  # CPU only: XLA's per-step buffers stop page-faulting (before jax runs)
        host_memory.reuse_host_memory()
    # Multi-host: jax.distributed must start before any other jax call.
    if args.distributed:
        os.environ["FLAXBERT_DISTRIBUTED"] = "1"
    from flaxbert.parallel import initialize_distributed

    try:
        initialize_distributed()
    except ValueError as error:  # a multi-process environment set in part, or with a bad value
        return _error(error)
    if not args.no_compilation_cache:  # a rerun or --resume loads its compiled steps instead of compiling again
        import flaxbert

        flaxbert.enable_compilation_cache()
    from flaxbert.data import DataError
    from flaxbert.run import job
    from flaxbert.run.config import ConfigError

    try:
        config = build_config(args, extra)
        job.run(config, resume=args.resume, eval_only=args.eval_only, predict_file=args.predict_file or "")
    # PermissionError, ConnectionError: a gated Hub repository, a Hub server error (flaxbert's messages)
    except (ConfigError, DataError, job.RunError, ValueError, FileNotFoundError, PermissionError, ConnectionError) as e:
        return _error(e)
    except KeyboardInterrupt:  # before training (loading, the first evaluation); fit's own says what it saved
        print("train.py: stopped by Ctrl-C.", file=sys.stderr, flush=True)
        return 130
    return 0


def _error(error: Exception) -> int:
    """Says `error` as one line (with FLAXBERT_TRACEBACK set, after its traceback); the exit status is 2."""
    if os.environ.get("FLAXBERT_TRACEBACK"):
        traceback.print_exc()
    message = " ".join(str(error).split())
    print(f"train.py: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
