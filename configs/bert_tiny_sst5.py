"""Five-class sentiment (SST-5) with BERT-Tiny: the multi-class recipe.

From the Hub (SetFit/sst5, JSONL with `text` and `label` columns):
    python train.py --config configs/bert_tiny_sst5.py
From the original files (one example a line: `LABEL text`):
    python train.py --config configs/bert_tiny_sst5.py --train-file sst5/train.txt --validation-file sst5/dev.txt \
        --test-file sst5/test.txt
"""

from flaxbert.run.config import Config, DataConfig, OptimizerConfig


def get_config() -> Config:
    return Config(
        preset="bert_tiny_en_uncased",
        num_classes=5,
        sequence_length=128,
        batch_size=32,
        epochs=5,
        data=DataConfig(
            hub_repo="SetFit/sst5",
            train="train.jsonl",
            validation="validation.jsonl",
            test="test.jsonl",
            text_columns=("text",),
            label_column="label",
        ),  # fmt: skip
        optimizer=OptimizerConfig(name="recommended", learning_rate=1e-4, warmup_fraction=0.1, weight_decay=0.01),
        output_dir="runs/bert_tiny_sst5",
    )
