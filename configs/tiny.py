"""A CPU-sized config for tests and smoke runs: local files, short sequences, small batches, 2 epochs.

python train.py --config configs/tiny.py --preset PRESET_DIR --train-file train.tsv --validation-file dev.tsv
"""

from flaxbert.run.config import Config, DataConfig, MeshConfig, OptimizerConfig


def get_config() -> Config:
    return Config(
        preset="",
        num_classes=2,
        sequence_length=64,
        bucket=False,  # one compiled step shape: on CPU compiling each bucket costs more than the padding
        batch_size=16,
        eval_batch_size=64,
        epochs=2,
        log_every=4,
        checkpoint_every=32,
        output_dir="runs/tiny",
        data=DataConfig(hub_repo="", train="", validation="", text_columns=("sentence",), label_column="label"),
        optimizer=OptimizerConfig(name="keras_default", learning_rate=2e-3),
        mesh=MeshConfig(data=-1, fsdp=1),
    )
