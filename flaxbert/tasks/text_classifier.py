"""`TextClassifier`, `BertTextClassifier`, `DistilBertTextClassifier`: keras-hub's task objects over the pure core.

An object holds a backbone (its config and params), the head's config and params, an optional preprocessor and the
compile settings. `fit` / `evaluate` / `predict` check the input, build the jitted steps for the mesh once, and call
the functional loops in `flaxbert.training`; the objects add no math of their own.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import pickle
import threading
import typing
import warnings
import weakref
from collections.abc import Mapping

import flax.linen as nn
import jax
import numpy as np
import optax

from flaxbert import checkpoint
from flaxbert.backbones import PARAMS_LOCK, Backbone, BertBackbone, DistilBertBackbone
from flaxbert.models import BertClassifier, BertHeadConfig, DistilBertClassifier, DistilBertHeadConfig
from flaxbert.models.abstract import abstract_params, check_params
from flaxbert.models.compute_params import cast_dtype, projections, with_copies
from flaxbert.models.random_init import check_seed, random_params
from flaxbert.parallel import check_hidden_dim, host_to_mesh, outside_mesh_context, param_shardings, to_host
from flaxbert.parallel.mesh import passed_over_by_warnings, warning_stacklevel
from flaxbert.presets import hf_export, native
from flaxbert.presets.registry import presets_for
from flaxbert.tasks import arguments, resume
from flaxbert.tasks.data import check_preprocessor, prepare, split_validation
from flaxbert.tasks.summary import summary_lines
from flaxbert.text import (
    BertTextClassifierPreprocessor,
    BertTokenizer,
    DistilBertTextClassifierPreprocessor,
    DistilBertTokenizer,
)
from flaxbert.training import compile_ahead, loops, optimizers, programs, shared_steps, steps
from flaxbert.training.batches import fingerprint, num_batches, padded_rows

# Guards each classifier's cache of jitted steps (one lock for all: a classifier stays picklable, and building a
# step's shardings takes well under a second).
_STEPS_LOCK = threading.Lock()
_FITTING_LOCK = threading.Lock()  # each classifier's `_fitting`, checked and set at once
_SET_BY_COMPILE = "classifier.{name} is set by compile: call classifier.compile({name}=...) to change it."
# The "auto" optimizer and loss (on logits or on probabilities): one object each, so that classifiers compiled with
# them share their compiled steps (`training/shared_steps.py`).
_AUTO_OPTIMIZER = optimizers.keras_default()
_AUTO_LOSSES = {
    from_logits: functools.partial(steps.sparse_categorical_crossentropy, from_logits=from_logits)
    for from_logits in (True, False)
}


@dataclasses.dataclass
class History:
    """What `fit` returns, like Keras' History: `history` maps a metric name to one value per epoch."""

    history: dict[str, list[float]]
    epoch: list[int]


def _one_fit_at_a_time(fit):
    """`fit`, refused while the same classifier's fit runs (called from its `on_log`, or from another thread): the
    running fit ends by taking its own state, so what the second one trained was silently dropped."""

    @passed_over_by_warnings
    @functools.wraps(fit)
    def guarded(self, *args, **kwargs):
        with _FITTING_LOCK:
            if self._fitting:
                raise RuntimeError(
                    "fit was called on this classifier while its fit is running (from on_log, or from another "
                    "thread): the running fit would overwrite what this one trains. Fit after it returns, or fit a "
                    "copy (copy.deepcopy(classifier))."
                )
            self._fitting = True
        backbone = self.backbone
        with PARAMS_LOCK:  # the backbone refuses enable_lora meanwhile: the fit ends by putting its params back
            backbone._fits_running += 1
        try:
            return fit(self, *args, **kwargs)
        finally:
            with PARAMS_LOCK:
                backbone._fits_running -= 1
            self._fitting = False

    return guarded


class TextClassifier:
    """Base class. Subclasses name their backbone, linen model, head config and preprocessor classes."""

    backbone_cls: type[Backbone] | None = None  # None: the base class, which dispatches in from_preset
    presets = presets_for()  # the built-in names, {name: Preset}
    model_cls: type
    head_cls: type
    preprocessor_cls: type
    tokenizer_cls: type

    @outside_mesh_context
    def __init__(self, backbone: Backbone, preprocessor=None, *, seed: int = 0, head_params=None, **head_kwargs):
        check_seed(seed)
        if not isinstance(backbone, self.backbone_cls):
            raise TypeError(
                f"{type(self).__name__} needs a {self.backbone_cls.__name__}, got {type(backbone).__name__}."
            )
        # A DistilBERT preprocessor is a BERT one without segment_ids: its outputs must be this model's inputs too.
        if preprocessor is not None and (
            not isinstance(preprocessor, self.preprocessor_cls) or preprocessor.outputs != self.preprocessor_cls.outputs
        ):
            raise TypeError(f"preprocessor must be a {self.preprocessor_cls.__name__} or None, got {preprocessor!r}.")
        if preprocessor is not None:
            check_preprocessor(preprocessor, backbone.config)
        self.backbone, self.preprocessor = backbone, preprocessor
        self.head = self.head_cls(**head_kwargs)
        self.head_params, self._seed = head_params, seed
        self.bucket = True  # pad raw-text batches to their length bucket, not to sequence_length
        self._fits = 0  # fit calls that trained: the next fit's default seed
        self._fitting = False  # a fit is running (`_one_fit_at_a_time`)
        self._placed_params: dict[int, _Placed] = {}  # id(shardings) -> what `_placed` remembers for them
        self.compile()

    def __getattr__(self, name):
        # Only for attributes not found: keras.Model's that a ported notebook reaches for get what to use instead.
        instead = _KERAS_MODEL_ATTRIBUTES.get(name)
        if instead is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        raise AttributeError(f"{type(self).__name__} has no {name} (a keras.Model attribute): {instead}.")

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"a {type(self).__name__} is not called as a Keras model is: predict(x) returns its logits as numpy; "
            "for a jax function of params and inputs, use classifier.model.apply({'params': classifier.params}, "
            "inputs) (README: The functional core)."
        )

    def _init_head(self, mesh, boxed) -> None:
        """Seeded random head params (drawn on the host: `models/random_init.py`), born sharded over `mesh`;
        `boxed`: the model's `abstract_params`."""
        head = {k: v for k, v in boxed.items() if k != "backbone"}
        # drawn from the head's own structure, so taken without the setter's check against it
        self._head_params = host_to_mesh(random_params(head, self._seed, ("head",)), param_shardings(head, mesh))

    # -- presets ------------------------------------------------------------------------------------------------
    @classmethod
    @outside_mesh_context
    def from_preset(cls, preset, load_weights: bool = True, **kwargs) -> TextClassifier:
        """Loads a classifier from a preset; see `flaxbert.tasks.loading.load_text_classifier` for the arguments.

        `TextClassifier.from_preset` picks BERT or DistilBERT from the preset's config.
        """
        from flaxbert.tasks.loading import load_text_classifier

        return load_text_classifier(cls, preset, load_weights, **kwargs)

    @outside_mesh_context
    def save_to_preset(self, preset_dir) -> None:
        """Writes a flaxbert preset: configs, tokenizer and params (Orbax); `from_preset` restores it exactly. LoRA
        adapters are merged into their kernels, as keras-hub saves them (`backbone.save_lora_weights` keeps them
        apart)."""
        tokenizer = None if self.preprocessor is None else self.preprocessor.tokenizer
        native.save(preset_dir, backbone_config=self.backbone.config, params=self.params,
                    head_config=self.head, tokenizer=tokenizer, preprocessor=self.preprocessor)  # fmt: skip

    @outside_mesh_context
    def export_to_transformers(self, directory):
        """Writes a Hugging Face transformers `*ForSequenceClassification` checkpoint (config, safetensors,
        tokenizer files) that `transformers.AutoModelForSequenceClassification.from_pretrained` loads. The tokenizer's
        `model_max_length` is the preprocessor's `sequence_length`, so transformers truncates texts where this
        classifier does. Sentence pairs too if the preprocessor truncates them as transformers does
        (`truncate="longest_first"`); keras-hub's `"round_robin"` and `"waterfall"` have no transformers equivalent,
        so a pair that overflows may be cut elsewhere there (a warning says so)."""
        tokenizer = None if self.preprocessor is None else self.preprocessor.tokenizer
        length = None if self.preprocessor is None else self.preprocessor.sequence_length
        if self.preprocessor is not None and self.preprocessor.truncate != "longest_first":
            warnings.warn(
                f"this classifier's preprocessor truncates sentence pairs with {self.preprocessor.truncate!r} "
                "(keras-hub's rule), which transformers does not have: with truncation=True it cuts pairs with "
                "'longest_first', so a pair longer than sequence_length may keep other tokens of each sentence in the "
                "exported model than here (single texts are cut alike). Set classifier.preprocessor.truncate = "
                "'longest_first' before fine-tuning to train as the export will run.",
                stacklevel=warning_stacklevel(2),
            )
        written = hf_export.export_transformers(directory, self.backbone.config, self.params, head_config=self.head,
                                                tokenizer=tokenizer, sequence_length=length)  # fmt: skip
        if self.activation == "softmax":
            warnings.warn(
                "this classifier returns probabilities (activation='softmax'), but a transformers checkpoint has no "
                f"output activation: the model in {written} returns logits (loaded by transformers, or by flaxbert "
                "from_preset); apply a softmax to its outputs, or pass activation='softmax' when loading it here.",
                stacklevel=warning_stacklevel(2),
            )
        return written

    # -- state ---------------------------------------------------------------------------------------------------
    @property
    def model(self) -> nn.Module:
        """The flax model (`BertClassifier` / `DistilBertClassifier`) of the backbone's config as it is now
        (`backbone.enable_lora` changes it) and the head's: `model.apply({"params": classifier.params}, inputs)`."""
        config = self.backbone.config
        model = self.__dict__.get("_model")
        if model is None or model.backbone != config:
            model = self._model = self.model_cls(config, self.head)
        return model

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    # What compile sets, read-only: an assignment would reach only steps built after it (a fit or evaluate builds
    # and keeps them), and would skip compile's checks.
    @property
    def optimizer(self) -> optax.GradientTransformation:
        """The optax optimizer `fit` trains with (set by `compile`)."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, value) -> None:
        raise AttributeError(_SET_BY_COMPILE.format(name="optimizer"))

    @property
    def loss(self):
        """The loss `fit` and `evaluate` compute (set by `compile`)."""
        return self._loss

    @loss.setter
    def loss(self, value) -> None:
        raise AttributeError(_SET_BY_COMPILE.format(name="loss"))

    @property
    def mesh(self) -> jax.sharding.Mesh:
        """The device mesh every step runs on (set by `compile`)."""
        return self._mesh

    @mesh.setter
    def mesh(self, value) -> None:
        raise AttributeError(_SET_BY_COMPILE.format(name="mesh"))

    @property
    def bucket(self) -> bool:
        """Whether raw-text batches are padded only to their length bucket (16, 24, 32, ...), not to the
        preprocessor's `sequence_length` (default True; it changes the speed, not what is trained or predicted)."""
        return self._bucket

    @bucket.setter
    def bucket(self, value) -> None:
        self._bucket = arguments.flag("classifier.bucket", value)

    @property
    def trainable(self) -> bool:
        """Always True: fit trains the head, and the backbone unless `backbone.trainable` is False. Setting True
        makes the backbone trainable too, as Keras' `model.trainable = True` does its layers; False is refused:
        a classifier that updates nothing has nothing to fit (freeze the encoder with `backbone.trainable`)."""
        return True

    @trainable.setter
    def trainable(self, value) -> None:
        if value is not True and value is not np.True_:
            raise ValueError(
                f"classifier.trainable = {value!r}: a classifier with nothing trainable would fit nothing. To train "
                "the head alone, set classifier.backbone.trainable = False."
            )
        self.backbone.trainable = True

    @property
    def activation(self) -> str | None:
        return self.head.activation

    @property
    def label_names(self) -> tuple[str, ...] | None:
        """The classes' names, saved in presets and exported as transformers' `id2label`; None: unnamed."""
        return self.head.label_names

    @property
    def params(self) -> dict:
        """The whole model's params: `{"backbone": ..., <head params>}` (the backbone object owns its subtree).
        Assigning checks them whole (names, shapes, float32) before taking any: a refusal changes nothing."""
        with PARAMS_LOCK:  # both parts of one moment, while another thread's fit may be setting its trained ones
            return {"backbone": self.backbone.params, **self.head_params}

    @params.setter
    def params(self, params: dict) -> None:
        if not isinstance(params, Mapping) or "backbone" not in params:
            got = f"keys {sorted(params)}" if isinstance(params, Mapping) else type(params).__name__
            raise ValueError(
                f"{type(self).__name__} params must be a dict {{'backbone': ..., <head params>}} like "
                f"classifier.params, got {got}."
            )
        head = {k: v for k, v in params.items() if k != "backbone"}
        self._check_head(head)
        with PARAMS_LOCK:
            self.backbone.params = params["backbone"]  # checked there
            self._head_params = head

    def _set_params(self, params) -> None:
        """Takes params the train step made from checked ones (its out_shardings fix their shapes and dtypes), without
        tracing the model again to check them: the end of every fit comes here."""
        with PARAMS_LOCK:
            self.backbone._params = params["backbone"]
            self._head_params = {k: v for k, v in params.items() if k != "backbone"}

    @property
    def head_params(self) -> dict | None:
        """The head's params (None until `compile` creates random ones); assigning checks them."""
        return self._head_params

    @head_params.setter
    def head_params(self, params) -> None:
        if params is not None:
            self._check_head(params)
        with PARAMS_LOCK:
            self._head_params = params

    def _check_head(self, params) -> None:
        boxed = abstract_params(self.model, self.backbone.config)
        check_params(params, {k: v for k, v in boxed.items() if k != "backbone"}, f"{type(self).__name__} head params")

    def count_params(self) -> int:
        return self.backbone.count_params() + sum(int(x.size) for x in jax.tree.leaves(self.head_params))

    def __repr__(self) -> str:
        head = ", ".join(f"{field.name}={getattr(self.head, field.name)!r}" for field in dataclasses.fields(self.head))
        return f"{type(self).__name__}({self.backbone!r}, {head}, preprocessor={self.preprocessor!r})"

    def summary(self, print_fn=None) -> None:
        """Prints the model's layers, their shapes and parameter counts, and the preprocessor, as Keras'
        `Model.summary()` does; `print_fn` is called with each line instead of `print`."""
        for line in summary_lines(self):
            (print_fn or print)(line)

    # -- pickling ------------------------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        """What `pickle` (and `copy.deepcopy`) keeps: the backbone, head, preprocessor, params (as numpy, gathered to
        the host), `bucket`, the count of fits (the next fit's default seed) and the compile settings, so a copy
        loaded in another process (a prediction service's workers) predicts and trains as this one does.

        Not kept: the optimizer state between fits (the copy's first fit starts a new one, as after `compile()`),
        and what cannot be pickled: an optax optimizer built from closures (most optax transforms are; "auto"
        pickles as itself) or a loss defined inside a function is replaced by "auto", with a warning naming it
        (`copy.deepcopy` shares them instead). The mesh is rebuilt over every device of the loading process, with
        the same fsdp size where that divides their count (`copy.deepcopy` keeps the mesh itself). The params are
        placed on it, as built ones are.
        """
        return self._state(pickling=True)

    @outside_mesh_context
    def __deepcopy__(self, memo) -> TextClassifier:
        """A copy as pickling makes one, on the same mesh, with an optimizer and loss of the same functions as the
        original's (equal, not the same objects)."""
        copied = type(self).__new__(type(self))
        copied.__setstate__(copy.deepcopy(self._state(pickling=False), memo))
        return copied

    def _state(self, pickling: bool) -> dict:
        # A pickle may load on other devices: it keeps the mesh's fsdp size; a deep copy keeps the mesh itself.
        compiled = dict(self._compiled_with, **({"fsdp": self.mesh.shape["fsdp"]} if pickling else {"mesh": self.mesh}))
        for name in ("optimizer", "loss"):
            if pickling and not _picklable(compiled[name]):
                warnings.warn(
                    f"this classifier's {name} ({compiled[name]!r}) cannot be pickled, so the pickled copy has "
                    f"{name}='auto'; call compile({name}=...) on the copy to set it again.",
                    stacklevel=warning_stacklevel(2),
                )
                compiled[name] = "auto"
        with PARAMS_LOCK:  # the backbone's and the head's params and the count of fits of one moment (a fit may end)
            backbone_params, head_params, fits = self.backbone._params, self.head_params, self._fits
        backbone = (type(self.backbone), self.backbone._state_with(backbone_params))
        return {"backbone": backbone, "preprocessor": self.preprocessor, "head": self.head,
                "head_params": to_host(head_params), "seed": self._seed, "bucket": self.bucket, "fits": fits,
                "compiled_with": compiled}  # fmt: skip

    @outside_mesh_context
    def __setstate__(self, state: dict) -> None:
        backbone = state["backbone"]
        if isinstance(backbone, tuple):  # (class, its state) since session 45; a backbone object before
            cls, backbone_state = backbone
            backbone = cls.__new__(cls)
            backbone.__setstate__(backbone_state)
        self.backbone, self.preprocessor, self.head = backbone, state["preprocessor"], state["head"]
        self._head_params, self._seed = state["head_params"], state["seed"]
        self.bucket, self._fits, self._fitting = state["bucket"], state["fits"], False
        self._placed_params = {}
        compiled = dict(state["compiled_with"])
        if "mesh" not in compiled:  # a pickle: the same fsdp size over this process's devices, where it fits
            fsdp, devices = compiled.pop("fsdp"), jax.device_count()
            if devices % fsdp and devices > 1:  # on one device, nothing to choose: say nothing
                warnings.warn(
                    f"the pickled classifier was compiled with an fsdp mesh axis of {fsdp}, which does not divide "
                    f"the {devices} devices here: the copy uses every device data parallel; call compile(mesh=...) to "
                    "choose.",
                    stacklevel=warning_stacklevel(2),
                )
            if devices % fsdp:
                fsdp = 1
            compiled["mesh"] = (-1, fsdp)  # -1: the data axis takes the devices fsdp leaves
        self.compile(**compiled)
        # Placed on the mesh now, as built params are (a predict would place them at its first call otherwise).
        self._set_params(jax.device_put(self.params, self._steps("predict")[1]))

    # -- compile -------------------------------------------------------------------------------------------------
    @outside_mesh_context
    def compile(self, optimizer="auto", loss="auto", metrics="auto", jit_compile=True, *, mesh=None, **keras_options):
        """Sets the optimizer, loss and device mesh for `fit` / `evaluate` (keras-hub's defaults with "auto").

        Args:
            optimizer: "auto" (Keras Adam 5e-5, eps 1e-7), any `optax.GradientTransformation`, or an
                `optax.MultiSteps` (gradient accumulation).
            loss: "auto" / "sparse_categorical_crossentropy" (from logits unless `activation="softmax"`), or a
                callable `(outputs [B, C], labels [B]) -> per-example loss [B]`.
            metrics: "auto", or a list of accuracy metrics: "accuracy", "sparse_categorical_accuracy" or Keras'
                `SparseCategoricalAccuracy()`; loss and accuracy are always reported, as "loss" and "accuracy".
            jit_compile: True or "auto": every step runs under `jax.jit`.
            mesh: None (every device, data parallel), a `(data, fsdp)` tuple such as `(1, 8)` for FSDP, or a
                `jax.sharding.Mesh` with axes ("data", "fsdp").

        Each call sets a new optimizer, as Keras' `compile` does: the next `fit` starts a new optimizer state,
        unless `optimizer` is the one this classifier already has (`compile(optimizer=classifier.optimizer, ...)`, on
        the same mesh): its state carries on, as a Keras optimizer object's does.
        """
        arguments.keras_keywords(self.compile, keras_options)
        requested = {"optimizer": optimizer, "loss": loss, "metrics": metrics}  # what a pickled copy compiles with
        previous = getattr(self, "_compiled_with", None)  # None: the first compile, from __init__ or unpickling
        same_optimizer = (
            previous is not None
            and not isinstance(optimizer, str)
            and any(optimizer is given for given in (previous["optimizer"], self.optimizer))
        )
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = _AUTO_OPTIMIZER
        elif isinstance(optimizer, optax.MultiSteps):  # gradient accumulation: a wrapper object, not a transformation
            # the same wrapper again keeps the transformation made from it, so that its state carries on. Its own
            # `gradient_transformation()` takes no extra arguments, though the wrapper passes them to what it wraps
            # (the loss, as value=, that optax.contrib.reduce_on_plateau needs)
            wrapped = optax.GradientTransformationExtraArgs(optimizer.init, optimizer.update)
            optimizer = self.optimizer if same_optimizer else wrapped
        if not isinstance(optimizer, optax.GradientTransformation):
            keras = isinstance(optimizer, str) or arguments.is_keras_object(optimizer)
            hint = (" (Keras' optimizer names and objects are not taken: pass e.g. optax.adamw(2e-5), or "
                    "flaxbert.training.optimizers.keras_default(1e-4) for Keras' Adam)") if keras else ""  # fmt: skip
            raise ValueError(f"optimizer must be 'auto' or an optax.GradientTransformation, got {optimizer!r}{hint}.")
        boxed = abstract_params(self.model, self.backbone.config)  # traced once for the model, its backbone included
        if optimizer is not _AUTO_OPTIMIZER:
            arguments.check_optimizer(optimizer, boxed)
        if isinstance(loss, str) and loss in ("auto", "sparse_categorical_crossentropy"):
            loss = _AUTO_LOSSES[self.activation != "softmax"]
        elif not callable(loss):
            raise ValueError(f"loss must be 'auto', 'sparse_categorical_crossentropy' or a callable, got {loss!r}.")
        else:
            arguments.check_loss(loss, self.num_classes)
        arguments.check_metrics(metrics)
        if jit_compile is not True and jit_compile != "auto":
            raise ValueError(f"jit_compile={jit_compile!r} is not supported: flaxbert always runs its steps under "
                             "jax.jit (jit_compile=True or 'auto', the default).")  # fmt: skip
        mesh = arguments.mesh(mesh)
        check_hidden_dim(mesh, self.backbone.config.hidden_dim)
        continued = same_optimizer and mesh == self.mesh  # its state is laid out on the mesh
        with _FITTING_LOCK, _STEPS_LOCK:  # no step is built for the settings being replaced and cached with the new
            if self._fitting:
                raise RuntimeError(
                    "compile was called on this classifier while its fit is running (from on_log, or from another "
                    "thread): the running fit keeps its optimizer and mesh, and would hand its optimizer state to the "
                    "next fit. Call compile after fit returns."
                )
            self._optimizer, self._loss, self._mesh, self._compiled_with = optimizer, loss, mesh, requested
            self._jitted = {}
            if not continued:
                self._optimizer_state = None  # (tx, opt_state, params' tree) after the last fit: the next continues it
        # Random params not made yet are born sharded on this mesh: abstract init -> shardings -> host draws, per shard.
        self.backbone.init_params(mesh, boxed["backbone"])
        if self.head_params is None:
            self._init_head(mesh, boxed)

    def _steps(self, kind: str, trainable: bool = True):
        """The jitted step of `kind` for the current compile settings (`shared_steps`: the same functions, programs
        compiled already, for every classifier that would compile the same ones, where the step's code is all
        flaxbert's: a predict step always, an eval step with the "auto" loss, a train step with the "auto" loss and
        optimizer; a user's callable may read state that changes between classifiers): for "train",
        `(train_fn, create_state), tx, (abstract state, shardings)`; for "eval" and "predict",
        `(step, param_shardings)`. The train step takes its dropout seed as an argument: one program for every
        seed."""
        model = self.model  # the backbone's config of now: enable_lora makes another model, with other steps
        key = (kind, trainable, model)
        with _STEPS_LOCK:  # threads predicting at once on a new classifier: one step each, not one per thread
            if key not in self._jitted:
                # the steps of a model before enable_lora are never asked for again: not kept alive here
                self._jitted = {k: v for k, v in self._jitted.items() if k[2] == model}
                cfg, own_loss = model.backbone, any(self.loss is loss for loss in _AUTO_LOSSES.values())
                if kind == "train":
                    built = shared_steps.train_steps(model, cfg, self.mesh, self.optimizer, self.loss, trainable,
                                                     share=own_loss and self.optimizer is _AUTO_OPTIMIZER)  # fmt: skip
                elif kind == "eval":
                    built = shared_steps.eval_step(model, cfg, self.mesh, self.loss, share=own_loss)
                else:
                    built = shared_steps.predict_step(model, cfg, self.mesh)
                self._jitted[key] = built
            return self._jitted[key]

    def _inference_step(self, kind: str):
        """`(step, params, spec, mesh)` for "eval" or "predict": the jitted step, the params as it reads them (on its
        shardings, cast to the compute dtype once, not in each step: `programs.model_params`), their
        `compile_ahead.spec`, which the loop compiles for, and the mesh the step was built for. A call runs on that
        mesh throughout, not on `self.mesh` read again: a `compile(mesh=...)` from another thread meanwhile changes
        the next call's, not this one's."""
        step, shardings = self._steps(kind)
        return (step, *self._placed(shardings), jax.tree.leaves(shardings)[0].mesh)

    def _placed(self, shardings):
        """`(params, spec)`: `self.params` on `shardings` as the step reads them (`programs.model_params`), and their
        spec. Params placed there are kept as the classifier's own (the same values: params a preset loaded or a user
        assigned come in on one device or as numpy) and remembered by weak references to their arrays, with that
        spec and, in a 16-bit dtype, the projections' casts, so the next call neither places them again nor builds
        their spec nor casts (for MiniLM-L6 ~8 ms, ~0.5 ms and, in bfloat16 on a CPU, ~4.5 ms a call). The casts
        (half the float32 projections' size) are kept until the params change or a fit starts; nothing else is held
        alive."""
        dtype = self.backbone.config.dtype
        params = self.params
        leaves = jax.tree.leaves(params)
        known = self._placed_params.get(id(shardings))
        if known is not None and known.shardings is shardings and _same_arrays(leaves, [r() for r in known.refs]):
            return with_copies(params, known.casts), known.spec
        placed = jax.device_put(params, shardings)
        model = programs.model_params(placed, dtype)
        spec, casts = compile_ahead.spec(model), None if cast_dtype(dtype) is None else projections(model)
        with PARAMS_LOCK:  # a fit in another thread that ended meanwhile set its trained params: they stay
            if not _same_arrays(jax.tree.leaves(self.params), leaves):
                return model, spec
            self._set_params(placed)
            if len(self._placed_params) >= 4:  # the predict and eval steps' shardings, a compile's new ones: a few
                self._placed_params.clear()
            refs = [weakref.ref(leaf) for leaf in jax.tree.leaves(placed)]
            self._placed_params[id(shardings)] = _Placed(shardings, refs, spec, casts)
        return model, spec

    def _rows(self, batch_size: int, name: str = "batch_size", mesh=None) -> int:
        """The rows a step of `batch_size` (checked: `arguments.batch_size`) takes on `mesh` (None: the classifier's),
        with a warning when padded that names the argument (`name`)."""
        mesh = self.mesh if mesh is None else mesh
        rows = padded_rows(batch_size, mesh.size)
        if rows != batch_size:
            warnings.warn(
                f"{name}={batch_size} does not split over {mesh.size} devices: each step is padded to "
                f"{rows} rows, and the padding rows carry no weight (results are exact; use a multiple of the device "
                "count to waste no compute).",
                stacklevel=warning_stacklevel(3),
            )
        return rows

    def _shrunk(self, batch_size: int, rows: int, size: int, mesh=None) -> tuple[int, int]:
        """(batch_size, rows) for training, evaluating or predicting `size` examples on `mesh` (None: the
        classifier's): a batch larger than they need shrinks to the next power of two (so at most one program per
        doubling) that splits over the devices."""
        if size >= batch_size:
            return batch_size, rows
        devices = (self.mesh if mesh is None else mesh).size
        smaller = min(batch_size, max(1 << (size - 1).bit_length(), devices))
        return smaller, min(rows, padded_rows(smaller, devices))

    def _prepare(self, x, y, sample_weight, need_labels: bool, training: bool = False, class_weight=None):
        """`(ArrayData, bucket)`: the checked data and whether its batches are cut to their length buckets. Raw text
        to evaluate or predict is packed only as wide as its longest row's bucket (memory follows the texts, not
        sequence_length); training data keeps the full width, as a resumed fit's data digest covers the shapes."""
        data, is_text = prepare(x, y, sample_weight, preprocessor=self.preprocessor,
                                backbone_config=self.backbone.config, num_classes=self.num_classes,
                                need_labels=need_labels, label_names=self.label_names,
                                bucket=self.bucket and not training, class_weight=class_weight)  # fmt: skip
        return data, is_text and self.bucket

    # -- fit / evaluate / predict ----------------------------------------------------------------------------------
    @_one_fit_at_a_time
    @outside_mesh_context
    def fit(self, x, y=None, batch_size: int = 32, epochs: int = 1, verbose="auto", *, validation_data=None,
            shuffle: bool = True, sample_weight=None, seed: int | None = None, checkpoint_dir=None,
            checkpoint_every: int | None = None, on_log=None, log_every: int = 50,
            group_by_length: bool = False, validation_batch_size: int | None = None, class_weight=None,
            validation_split: float = 0.0, **keras_options) -> History:  # fmt: skip
        """Fine-tunes on `x`, `y`; returns a `History` of per-epoch loss and accuracy (and `val_*` ones).

        `x`, `y`, `batch_size`, `epochs` and `verbose` may be passed by position, in Keras' order; the rest by name.
        `y` holds class ids, or class names where the classifier has `label_names` (each name is its index there).
        The history's accuracy is the fraction of examples classified correctly, whatever their `sample_weight`
        (Keras' compile metrics ignore it); the loss is weighted. `class_weight` (Keras'), `{class: weight}` keyed by
        class ids or names of `label_names`, weighs each training example by its class instead (1 for a class left
        out), say `{0: 1.0, 1: 4.0}` where class 1 is four times rarer; it is not passed with `sample_weight`, and
        validation is not weighted by it.

        Unlike keras-hub, list and array inputs are reshuffled every epoch (`shuffle=True`). `seed` fixes the data
        order and the dropout masks; None (the default) takes the classifier's count of earlier fits (0, 1, ...), so
        calling fit again, say once per epoch, draws a new order and new masks as Keras' fit does. As in Keras, the
        optimizer state (Adam's moments, the step count that drives an optax schedule) carries over from one fit
        to the next: without shuffle and dropout (which each call draws anew), two `fit(epochs=1)` calls train
        exactly as one `fit(epochs=2)`. It starts anew after
        `compile()` with another optimizer and when `backbone.trainable` changed since the last fit (other params
        train); a fit cut short keeps the optimizer state of its last
        completed step with its params. When `checkpoint_dir` holds a checkpoint of this same run (same model and
        loss, data, batch_size, shuffle, seed; a None seed takes the checkpoint's), training resumes exactly where
        it stopped (same params, optimizer state and next batch), whatever the classifier held; a finished run's
        params are restored, with a warning. The optimizer's hyper-parameters are not compared (optax keeps them
        in closures): resume with the same ones. Nor are the params and optimizer state the run started from: a
        run killed before its first checkpoint starts again from what the classifier then holds.
        `checkpoint_every` also saves every that many steps; an epoch's end always saves; with a `checkpoint_dir`,
        SIGTERM saves and exits with status 0, and the first Ctrl-C saves after its step, then raises
        KeyboardInterrupt (a second one raises at once).
        `backbone.trainable = False` freezes the encoder: only the head is updated. `on_log(row)`, if given, is
        called with a dict of training metrics every `log_every` steps and with each validation's metrics (the
        classifier takes the trained params when fit returns or stops: inside on_log it holds those fit began with).
        `group_by_length=True` (raw-text input with `bucket` on) batches sentences of similar length together, as
        transformers' `group_by_length` does: each batch is cut from a length-sorted window of 50 shuffled batches,
        so bucketed batches pad far less (SST-2: 21 instead of 48 positions on average; an epoch ran 1.8x faster on
        CPU); which sentences share a batch changes, so results differ from ungrouped training as another seed's do.
        `validation_split` (Keras'), a fraction in [0, 1), holds out the last rows of `x` (before shuffling) and
        validates on them after each epoch, as Keras does, for any `x` fit takes (Keras' needs arrays); given with
        `validation_data`, it is not used (a warning says so).
        `validation_batch_size` (Keras' keyword; None: `batch_size`) is the batch of each epoch's validation.
        `epochs=0` checks the inputs, trains nothing and returns an empty History, as Keras' fit does.
        """
        arguments.keras_keywords(self.fit, keras_options)
        epochs, batch_size = arguments.non_negative_int("epochs", epochs), arguments.batch_size(batch_size)
        if validation_batch_size is None:
            validation_batch_size = batch_size
        validation_batch_size = arguments.positive_int("validation_batch_size", validation_batch_size, "None or ")
        verbose = arguments.verbosity(verbose)
        log_every = arguments.positive_int("log_every", log_every)
        if checkpoint_every is not None:
            checkpoint_every = arguments.positive_int("checkpoint_every", checkpoint_every,
                                                      "None (epoch ends only) or ")  # fmt: skip
            if checkpoint_dir is None:  # it would save nothing, and the user would believe the run was saved
                raise ValueError(
                    f"checkpoint_every={checkpoint_every} saves into checkpoint_dir, which is None: pass "
                    "checkpoint_dir (a directory the run is saved in and resumes from), or leave checkpoint_every out."
                )
        shuffle = arguments.flag("shuffle", shuffle)
        group_by_length = arguments.flag("group_by_length", group_by_length)
        if on_log is not None and not callable(on_log):
            raise ValueError(f"on_log must be a function of one row (a dict) or None, got {on_log!r}.")
        arguments.check_seed(seed)
        arguments.check_checkpoint_dir(checkpoint_dir)
        validation_split = arguments.validation_split(validation_split)
        if validation_split and validation_data is not None:
            warnings.warn(
                f"validation_split={validation_split} is not used: validation_data is given, and validates instead "
                "(as in Keras). Pass one of them.",
                stacklevel=warning_stacklevel(2),
            )
        if self.num_classes == 1:  # a one-logit head predicts (a regression checkpoint's, say), but trains nothing
            warnings.warn(
                "num_classes=1: every label is class 0, and the cross-entropy over one class is 0 for every example, "
                "so fit trains nothing (keras-hub's does the same). Use num_classes=2 for two classes.",
                stacklevel=warning_stacklevel(2),
            )
        rows = self._rows(batch_size)
        data, bucket = self._prepare(x, y, sample_weight, need_labels=True, training=True, class_weight=class_weight)
        if group_by_length and not bucket:
            why = "x is preprocessed, not raw text" if self.bucket else "classifier.bucket is False"
            raise ValueError(
                f"group_by_length=True only helps length-bucketed batches, and {why}: pass raw strings with "
                "classifier.bucket = True, or leave group_by_length off."
            )
        validate = compile_validation = val_data = None
        if validation_data is not None:
            val_x, val_y, val_weight = arguments.unpack_validation(validation_data)
            try:
                val_data, val_bucket = self._prepare(val_x, val_y, val_weight, need_labels=True)
            except ValueError as error:  # the checks speak of x and y: say which ones
                raise ValueError(f"validation_data: {error}") from None
        elif validation_split:
            data, val_data = split_validation(data, validation_split, class_weighted=class_weight is not None)
            val_bucket = bucket
        if val_data is not None:
            val_step = self._steps("eval")[0]
            val_rows = rows
            if validation_batch_size != batch_size:  # a padding warning of its own, and none twice
                val_rows = self._rows(validation_batch_size, "validation_batch_size")
            val_batch = self._shrunk(validation_batch_size, val_rows, len(val_data))
            validate = _said_when_out_of_memory(
                functools.partial(self._evaluate_prepared, val_step, val_data, *val_batch, val_bucket),
                f"flaxbert: validating in batches of validation_batch_size={validation_batch_size} did not fit in "
                "device memory; fit again with a smaller validation_batch_size (with a checkpoint_dir, the run "
                "resumes at this validation). The classifier holds the params of the steps it trained.",
            )
            compile_validation = functools.partial(loops.compile_evaluate_ahead, eval_fn=val_step, data=val_data,
                                                   batch_size=val_batch[0], rows=val_batch[1], mesh=self.mesh,
                                                   bucket=val_bucket)  # fmt: skip
        if epochs == 0:  # the inputs checked, nothing to train: Keras' fit returns an empty History too
            return History({}, [])
        trains = self.backbone._trains  # True, False, or "adapters" after enable_lora
        (train_fn, create_state), tx, (abstract, shardings) = self._steps("train", trains)
        # A batch larger than the data trains as one batch of (a power of two over) its rows, as Keras' fit runs one of
        # len(x): the same examples and masks, without padding rows (a 2**21 batch over 4 examples ran out of memory).
        step_batch, step_rows = self._shrunk(batch_size, rows, len(data))
        trained = resume.trained_model(self.backbone.config, self.head, self.loss, type(self.model).__name__)
        record = {"examples": len(data), "batch_size": batch_size, "trainable": trains,
                  "group_by_length": group_by_length, "shuffle": shuffle, "data": fingerprint(data),
                  "model": trained}  # fmt: skip
        if validation_data is not None:  # its scores are the run's history too: a resume must score the same data
            record["validation"] = fingerprint(val_data)
        try:
            mngr = checkpoint.manager(checkpoint_dir) if checkpoint_dir is not None else None
        except OSError as error:  # Orbax makes the directory
            raise ValueError(
                f"checkpoint_dir {str(checkpoint_dir)!r} cannot be created ({error.strerror}: {error.filename}); pass "
                "a directory this process can write."
            ) from None
        early = []  # programs compiled ahead of the loop: cancelled if anything stops the fit first
        try:
            saved = checkpoint.latest_record(mngr) if mngr is not None else None
            if seed is None:  # every record holds the seed its run trained with
                seed = saved["seed"] if saved is not None else self._fits
            saved = resume.resumable(None if mngr is None else mngr.directory, saved, record, seed)
            if saved is not None:
                checkpoint.validated_steps(mngr)  # a damaged record of validations is said now, not an epoch later
            last_step = epochs * num_batches(len(data), batch_size)
            start = saved["step"] if saved is not None else 0
            if start < last_step:  # the first programs compile while the state is built or restored
                early = self._compile_fit_ahead(train_fn, programs.state_spec(abstract, shardings), data,
                                                compile_validation, batch_size=step_batch, epochs=epochs, seed=seed,
                                                shuffle=shuffle, rows=step_rows, bucket=bucket,
                                                group_by_length=group_by_length, start=start)  # fmt: skip
            self._placed_params.clear()  # the casts predict kept: not read while training
            state = self._initial_state(mngr, saved, create_state, tx, abstract, shardings)
            if start >= last_step:
                warnings.warn(
                    f"checkpoint_dir {str(checkpoint_dir)!r} holds this run already trained to step {saved['step']} "
                    f"(epochs={epochs} is {last_step} steps): its params are restored and nothing is trained. Use a "
                    "new checkpoint_dir (or more epochs) to train again.",
                    stacklevel=warning_stacklevel(2),
                )
            state, history = loops.fit(state, train_fn, data, batch_size=step_batch, epochs=epochs, seed=seed,
                                       shuffle=shuffle, mesh=self.mesh, rows=step_rows, bucket=bucket,
                                       group_by_length=group_by_length, ckpt=mngr,
                                       ckpt_every=checkpoint_every, record=record,
                                       saved_totals=(saved or {}).get("totals"), validate=validate,
                                       compile_validation=compile_validation,
                                       verbose=verbose, log_every=log_every, on_log=on_log,
                                       on_interrupt=functools.partial(self._keep_interrupted, tx,
                                                                      restored=saved is not None))  # fmt: skip
        except BaseException as error:
            for futures in early:
                compile_ahead.cancel(futures, cause=error)
            if _out_of_memory(error) and not _noted(error):
                error.add_note(
                    f"flaxbert: a train step of batch_size={batch_size} did not fit in device memory; fit again with "
                    "a smaller batch_size (or a bfloat16 dtype). The classifier holds the params it had before "
                    "this fit."
                )
            raise
        finally:  # also when a checkpoint is refused: an open manager's threads fail at interpreter exit
            if mngr is not None:
                mngr.close()
        with PARAMS_LOCK:  # a copy taken meanwhile holds the count and the params of before the fit, or of after it
            self._fits += 1
            self._keep_trained(tx, state)
        first_epoch = epochs - len(next(iter(history.values()), []))
        return History(history, list(range(first_epoch, epochs)))

    def _keep_trained(self, tx, state) -> bool:
        """Takes the params and the optimizer state of `state`, the last step a fit with the optimizer `tx` (its
        `_steps`') completed: its end, or where it was cut short (Ctrl-C, an error in on_log, SIGTERM), as Keras'
        fit keeps them; says whether it did. A state a failed step consumed (donated, so deleted) or computed (a step
        that failed on the device, out of memory say, hands back arrays that hold its error) is not taken: the params
        stay those from before the fit, and the next fit starts a new optimizer state if this one had continued (and
        so consumed) the kept one. (`tx`, not `state.tx`: jax rebuilds a step's output with the static fields of
        the call it first traced, which may hold an optimizer equal to this one but not the same object.)"""
        if _computed(jax.tree.leaves((state.params, state.opt_state))):
            self._set_params(state.params)
            self._optimizer_state = (tx, state.opt_state, jax.tree.structure(state.params))
            return True
        return False

    def _keep_interrupted(self, tx, state, dispatched: int, *, restored: bool) -> None:
        """A fit cut short (`loops.fit`'s on_interrupt): after `dispatched` steps, the classifier keeps what they
        trained (`_keep_trained`) and counts the fit, unless a step failed on the device and left nothing to keep.
        Before its first step, it stays as it was: a new state hands
        back the optimizer state it continued (its params are the classifier's own); one restored from a checkpoint
        (`restored`) is dropped, so a fit refused while resuming (a damaged record) changes nothing."""
        if not dispatched and restored:
            return
        with PARAMS_LOCK:
            if self._keep_trained(tx, state) and dispatched:
                self._fits += 1

    def _continued_optimizer_state(self, tx):
        """The optimizer state the last fit left, handed over for the next to continue (the train step donates it,
        so it is no longer kept), or None for a new one: none kept, or one of another optimizer (compile() made a
        new one; a toggled `backbone.trainable` trains other params), or of other params (`backbone.enable_lora` added
        adapters). Params cannot change shape under it: every assignment is checked against the model."""
        kept, self._optimizer_state = self._optimizer_state, None
        if kept is None or kept[0] is not tx or kept[2] != jax.tree.structure(self.params):
            return None
        return kept[1]

    def _initial_state(self, mngr, saved, create_state, tx, abstract, shardings):
        """The state to train from: restored from the checkpoint of `saved` (`resume.resumable`'s), or a new one."""
        if saved is None:
            return create_state(self.params, self._continued_optimizer_state(tx))
        saved = checkpoint.restore_latest(mngr, abstract.saved(), shardings.saved())
        return programs.restored_state(abstract, saved, shardings)

    def _compile_fit_ahead(self, train_fn, spec, data, compile_validation, **fit_args) -> list[dict]:
        """Starts compiling a fit's first programs, and its validation's, before its state (of `spec`) is built or
        restored, so they compile while that runs (`loops.compile_fit_ahead`); the fit finds them started. Returns
        their futures."""
        early = [loops.compile_fit_ahead(train_fn, spec, data, mesh=self.mesh, **fit_args)]
        if compile_validation is not None:
            early.append(compile_validation(spec.model_params))
        return early

    def _evaluate_prepared(self, eval_fn, data, batch_size, rows, bucket, params, verbose=0, params_spec=None):
        return loops.evaluate(params, eval_fn, data, batch_size=batch_size, mesh=self.mesh, rows=rows,
                              bucket=bucket, verbose=verbose, params_spec=params_spec)  # fmt: skip

    @outside_mesh_context
    def evaluate(self, x, y=None, batch_size: int = 32, verbose="auto", *, sample_weight=None,
                 return_dict: bool = True, **keras_options) -> dict[str, float] | list[float]:  # fmt: skip
        """`{"loss": ..., "accuracy": ...}` over every example of `x`, `y`, each counted once whatever the batch size
        and mesh (to float32 rounding: the sums' order follows the batches); `y` as in `fit`: class ids, or names
        of `label_names`.

        The loss is weighted by `sample_weight`; the accuracy is the fraction of examples classified correctly, as
        Keras reports its compile metrics. `return_dict=False` returns Keras' list `[loss, accuracy]`; the default
        is the dict (Keras' is the list).
        """
        arguments.keras_keywords(self.evaluate, keras_options)
        if not isinstance(return_dict, (bool, np.bool_)):
            raise ValueError(f"return_dict must be True (a dict) or False ([loss, accuracy]), got {return_dict!r}.")
        batch_size, verbose = arguments.batch_size(batch_size), arguments.verbosity(verbose)
        data, bucket = self._prepare(x, y, sample_weight, need_labels=True)
        eval_fn, params, spec, mesh = self._inference_step("eval")
        batch_size, rows = self._shrunk(batch_size, self._rows(batch_size, mesh=mesh), len(data), mesh)
        scores = loops.evaluate(params, eval_fn, data, batch_size=batch_size, mesh=mesh, rows=rows, bucket=bucket,
                                verbose=verbose, params_spec=spec)  # fmt: skip
        return scores if return_dict else [scores["loss"], scores["accuracy"]]

    @outside_mesh_context
    def predict(self, x, batch_size: int = 32, verbose="auto", **keras_options):
        """Logits `[N, num_classes]` as numpy (probabilities when `activation="softmax"`). Keras' `steps` and
        `callbacks` are taken where they ask for nothing (None), as fit's, evaluate's and compile's Keras-only
        keywords are (`arguments.keras_keywords`), and refused otherwise, saying what to do instead."""
        arguments.keras_keywords(self.predict, keras_options)
        batch_size, verbose = arguments.batch_size(batch_size), arguments.verbosity(verbose)
        data, bucket = self._prepare(x, None, None, need_labels=False)
        predict_fn, params, spec, mesh = self._inference_step("predict")
        batch_size, rows = self._shrunk(batch_size, self._rows(batch_size, mesh=mesh), len(data), mesh)
        return loops.predict(params, predict_fn, data, batch_size=batch_size, mesh=mesh, rows=rows, bucket=bucket,
                             verbose=verbose, params_spec=spec)  # fmt: skip


_WEIGHTS = (
    "params holds every weight, a dict of arrays (assign classifier.params = ... to replace them; "
    "backbone.trainable says whether fit trains the encoder)"
)
_SAVING = (
    "save_to_preset(directory) writes the classifier (config, weights, preprocessor) and "
    "flaxbert.TextClassifier.from_preset(directory) loads it; export_to_transformers(directory) writes a "
    "transformers checkpoint"
)
# keras.Model attributes a classifier does not have, and what to use instead (`TextClassifier.__getattr__`).
_KERAS_MODEL_ATTRIBUTES = {
    "predict_on_batch": "predict(x, batch_size=len(x)) runs x as one batch",
    "test_on_batch": "evaluate(x, y, batch_size=len(x), return_dict=False) scores x as one batch",
    "train_on_batch": ("fit(x, y, batch_size=len(x), shuffle=False) trains one step on x (the optimizer state "
                       "carries over from one fit to the next)"),
    **dict.fromkeys(("get_weights", "set_weights", "weights", "trainable_weights", "non_trainable_weights",
                     "variables", "trainable_variables", "non_trainable_variables"), _WEIGHTS),
    **dict.fromkeys(("save", "save_weights", "load_weights"), _SAVING),
    **dict.fromkeys(("get_config", "from_config"), f"{_SAVING}; backbone.get_config() is the encoder's config"),
    "layers": "backbone is the encoder and model the flax module of encoder and head, whose weights are params",
    **dict.fromkeys(("metrics", "metrics_names", "reset_metrics"), (
        "fit returns a History of 'loss' and 'accuracy' per epoch and evaluate their values; nothing is kept "
        "between calls")),
    "history": "fit returns the History (history.history maps 'loss', 'accuracy', 'val_loss', ... to lists)",
    "stop_training": ("a fit stops at an exception raised by its on_log, or at Ctrl-C / SIGTERM (saved first with a "
                      "checkpoint_dir)"),
}  # fmt: skip


class _Placed(typing.NamedTuple):
    """What `_placed` remembers of the params it placed on `shardings`: weak references to their arrays, the spec
    of the params the step reads, and their 16-bit casts (None in float32)."""

    shardings: object
    refs: list
    spec: object
    casts: dict | None


def _same_arrays(these: list, those: list) -> bool:
    """Whether two lists hold the very same arrays, in order (jax arrays are immutable: the same values)."""
    return len(these) == len(those) and all(a is b for a, b in zip(these, those, strict=True))


def _out_of_memory(error: BaseException) -> bool:
    """Whether `error` is XLA's out-of-device-memory one."""
    return isinstance(error, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(error)


def _noted(error: BaseException) -> bool:
    """Whether flaxbert already said what `error` means for the user (a note of `_said_when_out_of_memory`)."""
    return any(note.startswith("flaxbert:") for note in getattr(error, "__notes__", ()))


def _said_when_out_of_memory(run, note: str):
    """`run`, whose out-of-device-memory errors carry `note`: what ran out, and what to change."""

    @functools.wraps(run)
    def noted(*args, **kwargs):
        try:
            return run(*args, **kwargs)
        except jax.errors.JaxRuntimeError as error:
            if _out_of_memory(error):
                error.add_note(note)
            raise

    return noted


def _computed(leaves) -> bool:
    """Whether every array in `leaves` holds values: none was consumed (donated to a later step) and none carries the
    error of a step that failed on the device. Waits for the steps that compute them."""
    if any(leaf.is_deleted() for leaf in leaves):
        return False
    try:
        jax.block_until_ready(leaves)
    except jax.errors.JaxRuntimeError:
        return False
    return True


def _picklable(value) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # pickling a closure raises AttributeError, PicklingError or TypeError, by Python version
        return False
    return True


class BertTextClassifier(TextClassifier):
    """keras-hub's `BertTextClassifier`: pooled output -> dropout -> dense(num_classes).

    Args:
        backbone: a `BertBackbone`.
        num_classes: the number of classes.
        preprocessor: a `BertTextClassifierPreprocessor` for raw-text input, or None for preprocessed dicts.
        activation: None for logits, "softmax" for probabilities (the default loss then works on probabilities).
        dropout: the head's dropout rate.
        label_names: a name for each class, or None; kept by `save_to_preset` and written as `id2label` by
            `export_to_transformers` (a transformers checkpoint's `id2label` comes back as these).
        seed: the seed of the randomly initialised head.
        head_params: trained head params to use instead of a random head (`from_preset` passes them).

    Example:
        >>> vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "jumped", "."]
        >>> preprocessor = flaxbert.BertTextClassifierPreprocessor(
        ...     flaxbert.BertTokenizer(vocabulary, lowercase=True), sequence_length=16)
        >>> backbone = flaxbert.BertBackbone(vocabulary_size=len(vocabulary), num_layers=2, num_heads=2, hidden_dim=32,
        ...                                  intermediate_dim=64, max_sequence_length=16)
        >>> classifier = flaxbert.BertTextClassifier(backbone, num_classes=4, preprocessor=preprocessor)
        >>> history = classifier.fit(x=["The quick brown fox jumped.", "I forgot my homework."], y=[0, 3],
        ...                          batch_size=2, verbose=0)
        >>> classifier.predict(["The quick brown fox jumped."], verbose=0).shape
        (1, 4)
    """

    backbone_cls, model_cls, head_cls = BertBackbone, BertClassifier, BertHeadConfig
    presets = BertBackbone.presets
    preprocessor_cls, tokenizer_cls = BertTextClassifierPreprocessor, BertTokenizer

    def __init__(self, backbone: BertBackbone, num_classes: int, preprocessor=None, activation=None,
                 dropout: float = 0.1, *, label_names=None, seed: int = 0, head_params=None):  # fmt: skip
        super().__init__(backbone, preprocessor, seed=seed, head_params=head_params, num_classes=num_classes,
                         activation=activation, dropout=dropout, label_names=label_names)  # fmt: skip


class DistilBertTextClassifier(TextClassifier):
    """keras-hub's `DistilBertTextClassifier`: [CLS] -> dense(hidden_dim, relu) -> dropout -> dense(num_classes).

    Arguments as `BertTextClassifier`, with a `DistilBertBackbone` and a `DistilBertTextClassifierPreprocessor`, plus
    `hidden_dim` (the pre-classifier width; None: the backbone's) and a default `dropout` of 0.2.
    """

    backbone_cls, model_cls, head_cls = DistilBertBackbone, DistilBertClassifier, DistilBertHeadConfig
    presets = DistilBertBackbone.presets
    preprocessor_cls, tokenizer_cls = DistilBertTextClassifierPreprocessor, DistilBertTokenizer

    def __init__(self, backbone: DistilBertBackbone, num_classes: int, preprocessor=None, activation=None,
                 hidden_dim: int | None = None, dropout: float = 0.2, *, label_names=None, seed: int = 0,
                 head_params=None):  # fmt: skip
        super().__init__(backbone, preprocessor, seed=seed, head_params=head_params, num_classes=num_classes,
                         activation=activation, hidden_dim=hidden_dim, dropout=dropout,
                         label_names=label_names)  # fmt: skip
