"""`BertBackbone` and `DistilBertBackbone`: keras-hub's backbone objects as thin holders of (config, params).

They call the linen encoders in `flaxbert.models` in inference mode and add no math of their own.
"""

from __future__ import annotations

import dataclasses
import numbers
import threading

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxbert.models import BertConfig, BertEncoder, DistilBertConfig, DistilBertEncoder, compute_dtype, lora
from flaxbert.models.abstract import abstract_params, check_params, count_params
from flaxbert.models.config import check_architecture, check_execution, config_architecture, with_execution
from flaxbert.models.inputs import check_inputs
from flaxbert.models.random_init import check_seed, random_params
from flaxbert.parallel.host import host_to_mesh, to_host, wait_for_every_process
from flaxbert.parallel.mesh import outside_mesh_context, param_shardings
from flaxbert.presets import hf_checkpoint, hf_export, keras_format, lora_file, native
from flaxbert.presets.registry import presets_for
from flaxbert.presets.resolve import resolve

# Held while params are replaced, and while a classifier reads its own whole (its backbone's and its head's): no
# reader sees one part old and the other new, and a predict that keeps the params it placed never puts back params
# replaced meanwhile by another thread (a fit ending, an assignment).
PARAMS_LOCK = threading.RLock()


class Backbone:
    """Base class: a frozen config, a params tree and a jitted inference call."""

    config_cls: type
    encoder_cls: type
    architecture: str

    @classmethod
    @outside_mesh_context
    def from_config(cls, config, params=None, *, seed: int = 0) -> Backbone:
        """Builds a backbone from a config, with the given params or freshly initialised ones (seeded).

        Args:
            config: a `BertConfig` / `DistilBertConfig`, or the dict `get_config()` returns (as in Keras).
            params: the encoder's params; None initialises them from `seed` on first use.
            seed: the init seed.
        """
        if isinstance(config, dict):
            config = _config_from_dict(cls, config)
        if not isinstance(config, cls.config_cls):
            raise TypeError(
                f"{cls.__name__} needs a {cls.config_cls.__name__} or the dict get_config() returns, got "
                f"{type(config).__name__}."
            )
        self = cls.__new__(cls)
        self._build(config, params, seed)
        return self

    def _build(self, config, params, seed: int) -> None:
        check_seed(seed)
        if config.dtype == "float16" and jax.default_backend() == "cpu":
            raise ValueError(
                "dtype='float16' needs a GPU: XLA on CPU has no float16 matrix products with float32 accumulation "
                "(predict fails deep inside XLA). Use dtype='bfloat16' or 'float32' on CPU (from_preset(..., dtype=...)"
                " overrides a preset's)."
            )
        self.config, self.encoder, self.trainable = config, self.encoder_cls(config), True
        self._adapters_only = bool(config.lora_rank)  # a LoRA config trains its adapters, as after enable_lora
        self.__dict__.setdefault("_fits_running", 0)  # classifiers' fits on this backbone now (kept when LoRA rebuilds)
        self._params, self._seed = self._checked(params), seed  # random params are created lazily, where they will live
        self._apply = jax.jit(lambda p, inputs: self.encoder.apply({"params": p}, inputs))

    def __getstate__(self) -> dict:
        """Pickled as its config, seed, `trainable` and params, the params as numpy (gathered to the host); random
        params not made yet stay unmade (the copy makes the same ones from the seed). The jitted call is rebuilt."""
        return self._state_with(self._params)

    def _state_with(self, params) -> dict:
        """`__getstate__`'s state with `params` (this backbone's, read earlier: a classifier's copy takes its
        backbone's and its head's params of one moment)."""
        params = None if params is None else to_host(params)
        return {"config": self.config, "params": params, "seed": self._seed, "trainable": self.trainable,
                "adapters_only": self._adapters_only}  # fmt: skip

    @outside_mesh_context
    def __setstate__(self, state: dict) -> None:
        params = state["params"]  # on the default device: host arrays would be copied over at every call
        self._build(state["config"], None if params is None else jax.device_put(params), state["seed"])
        self.trainable = state["trainable"]
        self._adapters_only = state.get("adapters_only", False)  # pickles before LoRA have none

    @property
    def trainable(self) -> bool:
        """Whether a classifier's fit updates the encoder (False: only its head trains). After `enable_lora` it is
        True and only the adapters (and the adapted layers' biases) train; setting it, as in Keras, ends that: True
        then trains the whole encoder, adapters included, and False freezes it all."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if not isinstance(value, bool | np.bool_):  # "False" (from a config file) would train: it is truthy
            raise ValueError(f"trainable must be True or False, got {value!r}.")
        self._trainable, self._adapters_only = bool(value), False

    @property
    def _trains(self) -> bool | str:
        """What a classifier's fit trains here: True (everything), False (nothing: the head alone) or "adapters"
        (what `enable_lora` trains)."""
        return "adapters" if self._trainable and self._adapters_only else self._trainable

    @property
    def params(self) -> dict:
        """The encoder's params (float32). Random ones are created on first use, on the default device."""
        if self._params is None:
            self.init_params()
        return self._params

    @params.setter
    def params(self, value: dict) -> None:
        checked = self._checked(value)
        with PARAMS_LOCK:
            self._params = checked

    def _checked(self, params):
        """`params` if they fit this encoder (names, shapes, float32), else a ValueError naming what does not."""
        if params is not None:
            check_params(params, self.abstract_params(), f"{type(self).__name__} params")
        return params

    @outside_mesh_context
    def init_params(self, mesh=None, abstract=None) -> None:
        """Creates the seeded random params if there are none yet, born sharded over `mesh` when one is given.

        They are drawn on the host (`models/random_init.py`: no program to compile) and each device receives only its
        shard under the logical-axis rules, so no device ever holds an unsharded copy. `abstract`: the encoder's
        `abstract_params()` where the caller holds them already (a classifier's model's "backbone" part: the same
        boxed shapes, one trace fewer).
        """
        if self._params is not None:
            return
        abstract = self.abstract_params() if abstract is None else abstract
        drawn = random_params(abstract, self._seed)
        self._params = jax.device_put(drawn) if mesh is None else host_to_mesh(drawn, param_shardings(abstract, mesh))

    @outside_mesh_context
    def abstract_params(self):
        """The encoder's params as boxed shapes with logical axis names (`jax.eval_shape`; no memory used)."""
        return abstract_params(self.encoder, self.config)

    @classmethod
    @outside_mesh_context
    def from_preset(cls, preset, load_weights: bool = True, *, dtype=None, seed: int = 0, scan_layers=None,
                    attention_kernel=None) -> Backbone:  # fmt: skip
        """Loads a backbone from a flaxbert preset or a Hugging Face transformers checkpoint.

        Args:
            preset: a local directory, an `hf://org/repo` handle (downloaded through the Hugging Face cache) or a
                built-in name. Transformers checkpoints may hold model.safetensors (single or sharded) or
                pytorch_model.bin.
            load_weights: False builds the architecture with random weights and reads no weight file.
            dtype: compute dtype override, e.g. "bfloat16"; params stay float32.
            seed: the init seed when `load_weights=False`, and of a BERT pooler the checkpoint lacks: transformers saves
                BertForMaskedLM (what run_mlm fine-tunes), BertForTokenClassification and BertForQuestionAnswering
                without one. As transformers' `BertModel.from_pretrained` does, such a pooler is initialised randomly
                and a warning names it: `sequence_output` is the checkpoint's, `pooled_output` random until trained.
            scan_layers, attention_kernel: how the encoder runs (see `BertConfig`); None keeps the preset's.
        """
        check_execution(scan_layers, attention_kernel)  # before reading any weights
        check_seed(seed)
        config, params = cls._read_preset(preset, load_weights, dtype, seed)
        config = with_execution(config, scan_layers=scan_layers, attention_kernel=attention_kernel)
        return cls.from_config(config, params, seed=seed)

    @classmethod
    def _read_preset(cls, preset, load_weights: bool, dtype, seed: int) -> tuple:
        """(config, params or None) of a preset of this backbone's architecture."""
        preset = resolve(preset, load_weights, cls.architecture)
        saved = hf_checkpoint.read_config(preset)
        if native.is_native(saved):
            saved = native.read(preset)
            check_architecture(saved["architecture"], cls.architecture, preset)
            config = native.backbone_config(saved, compute_dtype(dtype) if dtype else None)
            if not load_weights:
                return config, None
            return config, native.restore_params(preset, nn.unbox(native_abstract(saved, config)))["backbone"]
        if keras_format.is_keras(saved):
            config = keras_format.backbone_config(saved, preset, dtype)
            check_architecture(config_architecture(config), cls.architecture, preset)
            if not load_weights:
                return config, None
            params = keras_format.backbone_params(preset, preset)
            check_params(params, abstract_params(cls.encoder_cls(config), config), str(preset))
            return config, jax.tree.map(jnp.asarray, params)
        if not load_weights:
            return hf_checkpoint.load_config(preset, dtype, cls.architecture), None
        return hf_checkpoint.load_backbone(preset, dtype=dtype, expected=cls.architecture, seed=seed)

    @outside_mesh_context
    def export_to_transformers(self, directory):
        """Writes a Hugging Face transformers `BertModel` / `DistilBertModel` checkpoint directory (LoRA adapters
        merged into their kernels)."""
        return hf_export.export_transformers(directory, self.config, self.params)

    @outside_mesh_context
    def save_to_preset(self, preset_dir) -> None:
        """Writes this backbone as a flaxbert preset directory (config.json + Orbax params). LoRA adapters are
        merged into their kernels, as keras-hub saves them: the preset computes the same function without LoRA
        (`save_lora_weights` keeps the adapters apart)."""
        native.save(preset_dir, backbone_config=self.config, params={"backbone": self.params})

    # -- LoRA ------------------------------------------------------------------------------------------------------
    def default_lora_layer_names(self) -> list[str]:
        """keras-hub's: the layers `enable_lora` adapts by default, the attention's query and value."""
        return list(lora.DEFAULT_TARGETS)

    @outside_mesh_context
    def enable_lora(self, rank: int, target_layer_names=None) -> None:
        """keras-hub's `Backbone.enable_lora`: freezes the backbone's weights and adds a LoRA adapter of `rank` to
        each of `target_layer_names` in every transformer layer (keras-hub's names; None: `["query", "value"]`, the
        attention's). A classifier's fit then trains the adapters, the adapted layers' biases and its head, as
        keras-hub's does; `lora_kernel_b` starts at zero, so the backbone computes what it did until trained.

        The layers that take one: query, key, value, attention_output, feedforward_intermediate_dense,
        feedforward_output_dense, and BERT's pooled_dense. As in keras-hub, `trainable` is True afterwards, and
        setting it again ends the adapters-only training (`trainable`). Once per backbone: a second call is
        refused, and so is a call while a classifier's fit on this backbone runs.
        """
        if self.config.lora_rank:
            raise ValueError(
                f"LoRA is enabled on this backbone already (rank {self.config.lora_rank} on "
                f"{list(self.config.lora_targets)}); keras-hub enables it once. Load the backbone again to start over."
            )
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank < 1:
            raise ValueError(f"enable_lora(rank={rank!r}): the rank must be a positive integer, e.g. 4 or 8.")
        targets = lora.DEFAULT_TARGETS if target_layer_names is None else target_layer_names
        names = isinstance(targets, list | tuple) and all(isinstance(name, str) for name in targets)
        if not names or not targets:
            raise ValueError(f"target_layer_names must be a non-empty list of layer names, e.g. ['query', 'value']; "
                             f"got {targets!r}.")  # fmt: skip
        config = dataclasses.replace(self.config, lora_rank=int(rank), lora_targets=tuple(targets))  # checks names
        self._adapt(config, {})

    @outside_mesh_context
    def save_lora_weights(self, filepath) -> None:
        """keras-hub's `save_lora_weights`: writes the LoRA adapters alone to `filepath` (ending in `.lora.h5`), in
        keras-hub's layout, so keras-hub's `load_lora_weights` reads it too. Written atomically. In a multi-process
        job every process calls it, as `save_to_preset`: the adapters are gathered from all of them, process 0
        writes the file, and every process returns once it is written."""
        if not self.config.lora_rank:
            raise ValueError("this backbone has no LoRA adapters to save; call backbone.enable_lora(rank) first.")
        lora_file.check_filename(filepath)  # on every process, before the collective gather
        params = to_host(self.params)
        if jax.process_index() == 0:
            lora_file.write(filepath, self.config, params)
        wait_for_every_process("flaxbert_save_lora_weights")

    @outside_mesh_context
    def load_lora_weights(self, filepath) -> None:
        """keras-hub's `load_lora_weights`: sets the LoRA adapters from a `.lora.h5` file (flaxbert's or keras-hub's),
        first enabling LoRA with the file's rank and layers where it is not enabled. The file is checked whole
        (rank, layers, shapes) before anything changes."""
        rank, factors = lora_file.read(filepath)
        targets = lora_file.targets_of(self.config, factors, repr(str(filepath)))
        if self.config.lora_rank and (rank, targets) != (self.config.lora_rank, self.config.lora_targets):
            raise ValueError(
                f"{str(filepath)!r} holds LoRA weights of rank {rank} for {list(targets)}, but this backbone's LoRA is "
                f"rank {self.config.lora_rank} on {list(self.config.lora_targets)}; both must match (or load the "
                "file into a backbone without LoRA, which takes the file's)."
            )
        config = dataclasses.replace(self.config, lora_rank=rank, lora_targets=targets)
        paths = lora_file.layer_entries(config)
        self._adapt(config, {paths[index]: pair for index, pair in factors.items()}, source=repr(str(filepath)))

    def _adapt(self, config, factors: dict, source: str = "") -> None:
        """Takes `config` (LoRA enabled) with this backbone's params and the adapters: `factors` {params path: (a,
        b)} where given, else the ones there already, else drawn from the seed (He-uniform and zeros, as Keras').
        Everything is checked before anything is set."""
        abstract = nn.unbox(abstract_params(self.encoder_cls(config), config))
        with PARAMS_LOCK:
            if self._fits_running:
                raise RuntimeError(
                    "LoRA was enabled or loaded on this backbone while a classifier's fit on it runs (from on_log, or "
                    "from another thread): the fit would end by putting back params without these adapters. Call it "
                    "after fit returns."
                )
            params = jax.tree.map(lambda leaf: leaf, self.params)  # new dicts: the adapters go into the copies
            for path in lora_file.layer_entries(config).values():
                layer, want = params, abstract
                for name in path:
                    layer, want = layer[name], want[name]
                if path in factors:
                    for factor, value in zip(lora.ADAPTER_PARAMS, factors[path], strict=True):
                        if value.shape != want[factor].shape:
                            raise ValueError(
                                f"{source} holds {'/'.join(path)}/{factor} of shape {value.shape}, but this backbone's "
                                f"is {want[factor].shape}: the file was saved from a backbone of another size."
                            )
                        layer[factor] = jnp.asarray(value)
                elif lora.ADAPTER_PARAMS[0] not in layer:
                    drawn = random_params({k: want[k] for k in lora.ADAPTER_PARAMS}, self._seed, path)
                    layer.update(jax.tree.map(jnp.asarray, drawn))
            kept, enabling = (self._trainable, self._adapters_only), not self.config.lora_rank
            self._build(config, params, self._seed)  # a LoRA config trains its adapters alone (keras-hub's enable_lora)
            if not enabling:  # new adapters in place of others: what trains stays
                self._trainable, self._adapters_only = kept

    def __call__(self, inputs: dict) -> dict[str, jax.Array] | jax.Array:
        """Runs the encoder in inference mode on a dict of [batch, length] int arrays."""
        return self._apply(self.params, check_inputs(inputs, self.config))

    def count_params(self) -> int:
        return count_params(self.abstract_params())

    def get_config(self) -> dict:
        return dataclasses.asdict(self.config)

    def __getattr__(self, name):
        # keras-hub exposes its constructor arguments as attributes (backbone.hidden_dim, backbone.num_layers, ...).
        config = self.__dict__.get("config")
        if config is not None and name in {f.name for f in dataclasses.fields(config)}:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config}, params={self.count_params():,})"


def _config_from_dict(cls, values: dict):
    """The config that `get_config()` wrote as `values`, or an error naming the keys that do not fit."""
    fields = dataclasses.fields(cls.config_cls)
    unknown = sorted(set(values) - {f.name for f in fields})
    required = (f.name for f in fields if f.default is dataclasses.MISSING)
    missing = [name for name in required if name not in values]
    if unknown or missing:
        raise ValueError(
            f"{cls.__name__}.from_config takes the dict {cls.__name__}.get_config() returns; this one has unknown "
            f"keys {unknown} and lacks {missing}."
        )
    return cls.config_cls(**values)


def native_abstract(saved: dict, config) -> dict:
    """The abstract (boxed) params tree a native preset holds: `{"backbone": ...}` plus its head, if any."""
    from flaxbert.models import BertClassifier, DistilBertClassifier

    head = native.head_config(saved)
    if head is None:
        encoder = BertEncoder(config) if isinstance(config, BertConfig) else DistilBertEncoder(config)
        return {"backbone": abstract_params(encoder, config)}
    model = BertClassifier(config, head) if isinstance(config, BertConfig) else DistilBertClassifier(config, head)
    return abstract_params(model, config)


class BertBackbone(Backbone):
    """keras-hub's `BertBackbone`: returns `{"sequence_output": [B, L, D], "pooled_output": [B, D]}`.

    Example:
        >>> backbone = flaxbert.BertBackbone(vocabulary_size=30552, num_layers=4, num_heads=4, hidden_dim=256,
        ...                                  intermediate_dim=512, max_sequence_length=128)
        >>> out = backbone({"token_ids": np.ones((1, 12), "int32"), "segment_ids": np.zeros((1, 12), "int32"),
        ...                 "padding_mask": np.ones((1, 12), "int32")})
        >>> out["pooled_output"].shape
        (1, 256)
    """

    config_cls, encoder_cls, architecture = BertConfig, BertEncoder, "bert"
    presets = presets_for("bert")

    def __init__(
        self,
        vocabulary_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        intermediate_dim: int,
        dropout: float = 0.1,
        max_sequence_length: int = 512,
        num_segments: int = 2,
        dtype=None,
        *,
        activation: str = "gelu_approximate",
        layer_norm_epsilon: float = 1e-12,
        scan_layers: bool = False,
        attention_kernel: str = "auto",
        lora_rank: int = 0,
        lora_targets=(),
        seed: int = 0,
    ):
        config = BertConfig(
            vocabulary_size,
            num_layers,
            num_heads,
            hidden_dim,
            intermediate_dim,
            dropout,
            max_sequence_length,
            num_segments,
            activation,
            layer_norm_epsilon,
            compute_dtype(dtype),
            scan_layers,
            attention_kernel,
            lora_rank,
            lora_targets,
        )
        self._build(config, None, seed)


class DistilBertBackbone(Backbone):
    """keras-hub's `DistilBertBackbone`: takes `token_ids` and `padding_mask`, returns the sequence output [B, L, D].

    Example:
        >>> backbone = flaxbert.DistilBertBackbone(vocabulary_size=30552, num_layers=4, num_heads=4, hidden_dim=256,
        ...                                        intermediate_dim=512, max_sequence_length=128)
        >>> backbone({"token_ids": np.ones((1, 12), "int32"), "padding_mask": np.ones((1, 12), "int32")}).shape
        (1, 12, 256)
    """

    config_cls, encoder_cls, architecture = DistilBertConfig, DistilBertEncoder, "distil_bert"
    presets = presets_for("distil_bert")

    def __init__(
        self,
        vocabulary_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        intermediate_dim: int,
        dropout: float = 0.1,
        max_sequence_length: int = 512,
        dtype=None,
        *,
        activation: str = "gelu",
        layer_norm_epsilon: float = 1e-12,
        scan_layers: bool = False,
        attention_kernel: str = "auto",
        lora_rank: int = 0,
        lora_targets=(),
        seed: int = 0,
    ):
        config = DistilBertConfig(
            vocabulary_size,
            num_layers,
            num_heads,
            hidden_dim,
            intermediate_dim,
            dropout,
            max_sequence_length,
            activation,
            layer_norm_epsilon,
            compute_dtype(dtype),
            scan_layers,
            attention_kernel,
            lora_rank,
            lora_targets,
        )
        self._build(config, None, seed)
