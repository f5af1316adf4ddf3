"""BERT-Tiny on GLUE SST-2 with keras-hub's defaults (Adam 5e-5, batch 32, 3 epochs).

python train.py --config configs/bert_tiny_sst2.py
The recommended recipe instead: --config.optimizer.name=recommended
"""

import dataclasses

from configs import sst2


def get_config():
    return dataclasses.replace(sst2.get_config(), preset="bert_tiny_en_uncased", output_dir="runs/bert_tiny_sst2")
