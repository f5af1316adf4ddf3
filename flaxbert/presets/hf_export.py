"""Writes a flaxbert model as a Hugging Face transformers checkpoint directory (REFERENCE §7.4, issue 5).

The directory holds `config.json`, `model.safetensors` and, with a tokenizer, `vocab.txt`, `tokenizer.json`,
`tokenizer_config.json` and `special_tokens_map.json`, so `AutoModel*.from_pretrained(dir)` and
`AutoTokenizer.from_pretrained(dir)` rebuild the same model and the same token ids (sentence pairs that overflow
are cut by transformers' `longest_first` rule, whatever flaxbert's preprocessor used), and `tokenizer.json` read
alone (`tokenizers.Tokenizer.from_file`) packs and splits special tokens typed in text as transformers does. Weight
names come from the one table in `hf_convert`, the same one the reader uses.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import uuid
import warnings

import flax.linen as nn
import jax
import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Tokenizer, processors

from flaxbert.models import lora
from flaxbert.models.config import BertConfig
from flaxbert.parallel.host import to_host, wait_for_every_process
from flaxbert.parallel.mesh import warning_stacklevel
from flaxbert.presets import hf_convert, output_directory, text_assets


def export_transformers(
    directory: str | os.PathLike,
    backbone_config,
    params: dict,
    *,
    head_config=None,
    tokenizer=None,
    sequence_length: int | None = None,
) -> pathlib.Path:
    """Exports a backbone or a classifier as a transformers checkpoint directory.

    Args:
        directory: where to write: a new or empty directory. Files go to a temporary sibling directory that is
            renamed into place at the end, so a failed export leaves nothing at `directory`.
        backbone_config: the `BertConfig` / `DistilBertConfig`.
        params: the encoder's params, or with `head_config` the classifier's `{"backbone": ..., <head params>}`.
            LoRA adapters are merged into their kernels (`lora.merged`): transformers' models have none.
        head_config: a `BertHeadConfig` / `DistilBertHeadConfig` to write a `*ForSequenceClassification` checkpoint;
            `None` writes a bare `BertModel` / `DistilBertModel`.
        tokenizer: a flaxbert `BertTokenizer` / `DistilBertTokenizer` to write alongside, or `None`.
        sequence_length: the tokenizer's `model_max_length`, where transformers' `truncation=True` and pipelines cut
            texts (a classifier's preprocessor length, what it was trained at); None: the model's position count.

    Returns:
        The path of the written directory.

    Raises:
        FileExistsError: `directory` exists and is not empty.
        PresetWriteError: `directory` is no path, a URL, a file, or cannot be created there (nothing is written).
        ValueError: the model cannot be expressed in transformers (see `hf_convert.hf_config`) or `params` do not
            match `backbone_config`.
    """
    target = output_directory.new_directory(directory, "export_to_transformers")
    backbone_config, params = lora.merged_config(backbone_config), lora.merged(params)
    pad_id = tokenizer.pad_token_id if tokenizer is not None else 0
    if tokenizer is not None:
        text_assets.check_vocabulary(tokenizer, backbone_config.vocabulary_size, "", "transformers would index past "
                                     "the embedding table.")  # fmt: skip
        unk = tokenizer.oov_token
        if tokenizer.special_tokens_in_strings and not any(t["content"] == unk for t in tokenizer.added_tokens):
            warnings.warn(
                f"this tokenizer matches [CLS], [SEP], [PAD] and [MASK] typed in text but splits {unk!r} (keras-hub's "
                f"rule); transformers matches {unk!r} too whenever it matches the others, so a text holding the "
                f"string {unk!r} gets other ids from the exported tokenizer.",
                stacklevel=warning_stacklevel(3),
            )
    # Everything that can fail on the user's input runs before anything touches the disk.
    config = hf_convert.hf_config(backbone_config, head_config, pad_token_id=pad_id)
    host = jax.tree_util.tree_map(np.asarray, nn.unbox(to_host(params)))  # every shard, from every process
    state = hf_convert.state_dict_from_params(host, backbone_config, with_head=head_config is not None)
    if jax.process_index() == 0:  # in a multi-process job, one writer; no process returns before it has written
        _write(target, config, state, tokenizer, backbone_config, sequence_length)
    wait_for_every_process("flaxbert-transformers-export")
    return target


def _write(target: pathlib.Path, config: dict, state: dict, tokenizer, backbone_config, sequence_length) -> None:
    staging = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    output_directory.make_staging(staging, target, stacklevel=5)  # the exporter's caller
    try:
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(state, str(staging / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            _write_tokenizer(staging, tokenizer, backbone_config, sequence_length)
        output_directory.move_into_place(staging, target, "export_to_transformers")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_tokenizer(directory: pathlib.Path, tokenizer, backbone_config, sequence_length) -> None:
    settings = tokenizer.get_config()
    specials = {name: getattr(tokenizer, name) for name in ("cls_token", "sep_token", "pad_token", "mask_token")}
    specials["unk_token"] = tokenizer.oov_token
    tokenizer.save_vocabulary(directory / "vocab.txt")
    tokenizer.save_tokenizer_json(directory / "tokenizer.json")
    # flaxbert's pipeline packs [CLS]/[SEP] itself, so its tokenizer.json has no post-processor: readers of the file
    # alone (the tokenizers library, text-embeddings-inference) need one. A special token among the file's added
    # tokens is matched where typed in text, by them and by transformers, so BERT's are listed only where flaxbert
    # matches them too; transformers registers them from special_tokens_map.json either way, and splits them as
    # `split_special_tokens` says. (Tokens added to the vocabulary are in the file already, after the vocabulary.)
    rust = Tokenizer.from_file(str(directory / "tokenizer.json"))
    if settings["special_tokens_in_strings"]:
        rust.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials.values()])
    cls, sep = specials["cls_token"], specials["sep_token"]
    rust.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, tokenizer.cls_token_id), (sep, tokenizer.sep_token_id)],
    )
    rust.save(str(directory / "tokenizer.json"))
    is_bert = isinstance(backbone_config, BertConfig)
    config = {
        "tokenizer_class": "BertTokenizer" if is_bert else "DistilBertTokenizer",
        "do_lower_case": settings["lowercase"],
        "strip_accents": settings["strip_accents"],
        "tokenize_chinese_chars": True,
        # flaxbert by default splits "[SEP]" typed in text like any other text; transformers does so only when told.
        "split_special_tokens": not settings["special_tokens_in_strings"],
        "model_max_length": sequence_length or backbone_config.max_sequence_length,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]
        if is_bert
        else ["input_ids", "attention_mask"],
        **specials,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (directory / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
