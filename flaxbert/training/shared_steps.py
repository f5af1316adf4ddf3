"""A classifier's jitted steps, shared with every classifier that would compile the same programs.

jax keeps a jitted function's compiled programs on that function object. A new classifier used to build new jitted
steps, so one equal to an earlier one compiled everything again: a notebook cell run twice, a k-fold
cross-validation or a sweep building a classifier per trial paid every train, eval and predict program's compile
each time (a BERT-base train step: ~19 s on an H200, ~7 s on a 2-core CPU, per batch length a bucketed loop meets).
Here the steps are kept for the arguments they are built from, and a classifier that asks with equal ones (the same
model config and head, an equal mesh, the same optimizer and loss) gets the same jitted functions, whose programs
are compiled already.

Shared only where a step's code is all flaxbert's (the caller says, `share`): the model's, and the "auto" loss and
optimizer, one object each. A user's loss or optimizer may read state that changes between classifiers (a class
weight set per fold, an attribute changed in a sweep): a step traced earlier would keep the old value, and a new
classifier must trace its own, as it always did. Nothing else a step computes with is captured: params, data,
seeds and the optimizer state are its arguments. An eval step does not depend on the optimizer, nor a predict step
on the loss, so those are shared wider. The cache holds flaxbert's objects and the compiled programs only.
"""

from __future__ import annotations

import collections
import threading

from flaxbert.models.abstract import abstract_params
from flaxbert.parallel import check_hidden_dim, param_shardings
from flaxbert.training import optimizers, programs

MAX_KEPT = 8  # step sets kept for classifiers to come (least recently asked for dropped first)

_lock = threading.Lock()
_kept: collections.OrderedDict = collections.OrderedDict()


def train_steps(model, cfg, mesh, optimizer, loss_fn, trainable: bool = True, share: bool = False):
    """`(train_fn, create_state), tx, (abstract, shardings)`: `programs.jit_train_step` and
    `programs.jit_create_state` for the optimizer `tx` (`optimizer`; with a frozen backbone
    `optimizers.freeze_backbone(optimizer)`, with LoRA's adapters alone (`trainable="adapters"`)
    `optimizers.train_lora(optimizer)`), and the train state's abstract shape and shardings
    (`programs.state_shardings`); kept and shared with `share`, built anew without."""

    def build():
        if trainable == "adapters":  # a backbone after enable_lora (`Backbone._trains`)
            tx = optimizers.train_lora(optimizer)
        else:
            tx = optimizer if trainable else optimizers.freeze_backbone(optimizer)
        abstract, shardings = programs.state_shardings(model, cfg, tx, mesh)
        train_fn = programs.jit_train_step(model, mesh, shardings, loss_fn=loss_fn)
        return (train_fn, programs.jit_create_state(tx, shardings)), tx, (abstract, shardings)

    return _shared(("train", model, mesh, optimizer, loss_fn, trainable), build) if share else build()


def eval_step(model, cfg, mesh, loss_fn, share: bool = False):
    """`(eval_fn, param_shardings)`: `programs.jit_eval_step` and the params' shardings; kept and shared with
    `share`, built anew without."""

    def build():
        shardings = _param_shardings(model, cfg, mesh)
        return programs.jit_eval_step(model, mesh, shardings, loss_fn=loss_fn), shardings

    return _shared(("eval", model, mesh, loss_fn), build) if share else build()


def predict_step(model, cfg, mesh):
    """`(predict_fn, param_shardings)`: `programs.jit_predict_step` and the params' shardings, always shared (its
    code is the model's alone)."""

    def build():
        shardings = _param_shardings(model, cfg, mesh)
        return programs.jit_predict_step(model, mesh, shardings), shardings

    return _shared(("predict", model, mesh), build)


def clear() -> None:
    """Forgets every kept step (their programs go once no classifier holds them)."""
    with _lock:
        _kept.clear()


def _param_shardings(model, cfg, mesh):
    check_hidden_dim(mesh, cfg.hidden_dim)
    return param_shardings(abstract_params(model, cfg), mesh)


def _shared(key: tuple, build):
    """What `build()` makes for `key`, made once and kept."""
    with _lock:  # threads asking at once get one set of steps: each would compile its own programs
        if key in _kept:
            _kept.move_to_end(key)
        else:
            _kept[key] = build()
            if len(_kept) > MAX_KEPT:
                _kept.popitem(last=False)
        return _kept[key]
