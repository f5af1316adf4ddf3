"""The one table of built-in presets (REFERENCE §7.3): architecture, parameter count, description and sources.

Every keras-hub preset is mirrored by keras-hub on the Hugging Face Hub as `hf://keras/<name>` (Keras format), which is
what flaxbert downloads; the Kaggle handle and the equivalent Hugging Face transformers checkpoint are listed too.
"""

from __future__ import annotations

import dataclasses

from flaxbert.models.config import BertConfig, DistilBertConfig


@dataclasses.dataclass(frozen=True)
class Preset:
    """A built-in preset: a named value, not a class."""

    name: str
    backbone: BertConfig | DistilBertConfig
    params: int  # backbone parameters, as keras-hub publishes them
    description: str
    lowercase: bool
    kaggle_handle: str
    hf_equivalent: str | None = None  # the transformers checkpoint with the same weights' origin
    num_classes: int | None = None  # set for task presets, which carry a trained head

    @property
    def architecture(self) -> str:
        return "bert" if isinstance(self.backbone, BertConfig) else "distil_bert"

    @property
    def hf_handle(self) -> str:
        return f"hf://keras/{self.name}"


def _bert(name, layers, hidden, heads, vocab, params, lowercase, description, hf, version=3, num_classes=None):
    return Preset(
        name=name,
        backbone=BertConfig(vocab, layers, heads, hidden, 4 * hidden),
        params=params,
        description=description,
        lowercase=lowercase,
        kaggle_handle=f"kaggle://keras/bert/keras/{name}/{version}",
        hf_equivalent=hf,
        num_classes=num_classes,
    )


def _distil_bert(name, vocab, params, lowercase, description, hf):
    return Preset(
        name=name,
        backbone=DistilBertConfig(vocab, 6, 12, 768, 3072),
        params=params,
        description=description,
        lowercase=lowercase,
        kaggle_handle=f"kaggle://keras/distil_bert/keras/{name}/3",
        hf_equivalent=hf,
    )


_EN, _MULTI, _ZH = 30522, 119547, 21128
_EN_CASED = 28996

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _bert(
            "bert_tiny_en_uncased",
            2,
            128,
            2,
            _EN,
            4_385_920,
            True,
            "2-layer, 128-wide BERT (Google's BERT-Tiny miniature), uncased English.",
            "google/bert_uncased_L-2_H-128_A-2",
        ),
        _bert(
            "bert_small_en_uncased",
            4,
            512,
            8,
            _EN,
            28_763_648,
            True,
            "4-layer, 512-wide BERT (Google's BERT-Small miniature), uncased English.",
            "google/bert_uncased_L-4_H-512_A-8",
        ),
        _bert(
            "bert_medium_en_uncased",
            8,
            512,
            8,
            _EN,
            41_373_184,
            True,
            "8-layer, 512-wide BERT (Google's BERT-Medium miniature), uncased English.",
            "google/bert_uncased_L-8_H-512_A-8",
        ),
        _bert(
            "bert_base_en_uncased",
            12,
            768,
            12,
            _EN,
            109_482_240,
            True,
            "BERT-Base, 12 layers, uncased English (Wikipedia + BooksCorpus).",
            "google-bert/bert-base-uncased",
        ),
        _bert(
            "bert_base_en",
            12,
            768,
            12,
            _EN_CASED,
            108_310_272,
            False,
            "BERT-Base, 12 layers, cased English (Wikipedia + BooksCorpus).",
            "google-bert/bert-base-cased",
        ),
        _bert(
            "bert_base_zh",
            12,
            768,
            12,
            _ZH,
            102_267_648,
            False,
            "BERT-Base, 12 layers, Chinese (Chinese Wikipedia).",
            "google-bert/bert-base-chinese",
        ),
        _bert(
            "bert_base_multi",
            12,
            768,
            12,
            _MULTI,
            177_853_440,
            False,
            "BERT-Base, 12 layers, cased, 104 languages (Wikipedia).",
            "google-bert/bert-base-multilingual-cased",
        ),
        _bert(
            "bert_large_en_uncased",
            24,
            1024,
            16,
            _EN,
            335_141_888,
            True,
            "BERT-Large, 24 layers, uncased English (Wikipedia + BooksCorpus).",
            "google-bert/bert-large-uncased",
        ),
        _bert(
            "bert_large_en",
            24,
            1024,
            16,
            _EN_CASED,
            333_579_264,
            False,
            "BERT-Large, 24 layers, cased English (Wikipedia + BooksCorpus).",
            "google-bert/bert-large-cased",
        ),
        _bert(
            "bert_tiny_en_uncased_sst2",
            2,
            128,
            2,
            _EN,
            4_385_920,
            True,
            "bert_tiny_en_uncased fine-tuned on GLUE SST-2 sentiment (0 negative, 1 positive).",
            None,
            version=5,
            num_classes=2,
        ),
        _distil_bert(
            "distil_bert_base_en_uncased",
            _EN,
            66_362_880,
            True,
            "DistilBERT-Base, 6 layers distilled from BERT-Base, uncased English.",
            "distilbert/distilbert-base-uncased",
        ),
        _distil_bert(
            "distil_bert_base_en",
            _EN_CASED,
            65_190_912,
            False,
            "DistilBERT-Base, 6 layers distilled from BERT-Base, cased English.",
            "distilbert/distilbert-base-cased",
        ),
        _distil_bert(
            "distil_bert_base_multi",
            _MULTI,
            134_734_080,
            False,
            "DistilBERT-Base, 6 layers distilled from multilingual BERT-Base, cased, 104 languages.",
            "distilbert/distilbert-base-multilingual-cased",
        ),
    )
}


def presets_for(architecture: str | None = None) -> dict[str, Preset]:
    """The built-in presets of one architecture ("bert", "distil_bert"), or all of them."""
    return {name: p for name, p in PRESETS.items() if architecture in (None, p.architecture)}
