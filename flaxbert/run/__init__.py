"""What `train.py` runs: a config system, the run itself (data -> evaluate -> fit -> evaluate -> save), its logs."""
