"""GLUE SST-2 with keras-hub's `compile()` defaults (Adam 5e-5); the default config of `train.py`.

python train.py --preset bert_tiny_en_uncased_sst2
"""

from flaxbert.run.config import Config, DataConfig, OptimizerConfig


def get_config() -> Config:
    return Config(
        preset="",  # given with --preset
        num_classes=2,
        sequence_length=128,
        batch_size=32,
        epochs=3,
        data=DataConfig(
            hub_repo="nyu-mll/glue",
            train="sst2/train-00000-of-00001.parquet",
            validation="sst2/validation-00000-of-00001.parquet",
            text_columns=("sentence",),
            label_column="label",
        ),  # fmt: skip
        optimizer=OptimizerConfig(name="keras_default", learning_rate=5e-5),
    )
