"""Whether a `checkpoint_dir`'s run is the one a fit would train: the record a fit keeps with each checkpoint, and the
comparison that resumes it or refuses it, naming what differs.
"""

from __future__ import annotations

import dataclasses
import functools

# Record keys newer than the first checkpoints, with the value a checkpoint without them was trained under.
_RECORD_DEFAULTS = {"group_by_length": False}
# Execution settings, not what is trained: a run resumes with another dtype, attention kernel or label names.
_NOT_COMPARED = {"dtype", "scan_layers", "attention_kernel", "label_names"}


def trained_model(backbone_config, head, loss, architecture: str) -> dict:
    """What a resumed run must train as it began: the architecture, the backbone's and head's hyper-parameters and the
    loss, flattened to dotted names, so a refusal names the field that differs."""
    parts = {"backbone": dataclasses.asdict(backbone_config), "head": dataclasses.asdict(head)}
    if not backbone_config.lora_rank:  # as records were before LoRA: runs without it resume as they did
        parts["backbone"] = {k: v for k, v in parts["backbone"].items() if k not in ("lora_rank", "lora_targets")}
    model = {f"{part}.{k}": list(v) if isinstance(v, tuple) else v  # as the record's JSON reads back
             for part, fields in parts.items() for k, v in fields.items() if k not in _NOT_COMPARED}  # fmt: skip
    model["loss"] = loss_name(loss)
    return dict(model, architecture=architecture)


def loss_name(loss) -> str:
    """A loss function's module and name, with a `functools.partial`'s keywords (the default loss is one)."""
    if isinstance(loss, functools.partial):
        return f"{loss_name(loss.func)}({', '.join(f'{k}={v!r}' for k, v in sorted(loss.keywords.items()))})"
    return f"{getattr(loss, '__module__', None)}.{getattr(loss, '__qualname__', type(loss).__qualname__)}"


def resumable(directory, saved: dict | None, record: dict, seed: int) -> dict | None:
    """The record of the checkpoint a fit resumes from (`saved`, the latest checkpoint's in `directory`, with the
    keys older checkpoints lack filled in), None for a fresh start; a checkpoint of another run is refused."""
    if saved is None:
        return None
    expected, saved = dict(record, seed=seed), {**_RECORD_DEFAULTS, **saved}
    # keys a checkpoint written before they were recorded lacks are not compared
    mismatched = {k: (saved[k], v) for k, v in expected.items() if k in saved and saved[k] != v}
    if "data" in mismatched and "examples" not in mismatched:  # a digest says nothing: say what it is
        mismatched["data"] = (
            "the same number of examples, but other texts, labels or weights (or texts tokenized to another "
            "sequence_length)"
        )
    if "validation" in mismatched:
        mismatched["validation"] = "other validation_data (texts, labels, weights or their number)"
    if "model" in mismatched:  # only the fields that differ
        was, now = mismatched.pop("model")
        keys = sorted(set(was) | set(now))
        mismatched.update({f"model {k}": (was.get(k), now.get(k)) for k in keys if was.get(k) != now.get(k)})
    if mismatched:
        raise ValueError(
            f"checkpoint_dir {str(directory)!r} holds a different run at step {saved['step']} (saved vs now: "
            f"{mismatched}); resume with the same model, loss, data, validation_data, batch_size, shuffle, seed, "
            "trainable and group_by_length settings, or use a new checkpoint_dir."
        )
    return saved
