"""DistilBERT-Base on GLUE SST-2 with the recommended recipe (AdamW 5e-5, 10% warmup, linear decay, weight decay
0.01, clipping at 1.0); bfloat16 compute, 3 epochs of batch 32.

python train.py --config configs/distil_bert_base_sst2.py
"""

import dataclasses

from configs import sst2
from flaxbert.run.config import OptimizerConfig


def get_config():
    return dataclasses.replace(
        sst2.get_config(),
        preset="distil_bert_base_en_uncased",
        precision="bfloat16",
        optimizer=OptimizerConfig(name="recommended", learning_rate=5e-5, warmup_fraction=0.1, weight_decay=0.01),
        output_dir="runs/distil_bert_base_sst2",
    )
