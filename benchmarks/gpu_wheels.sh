#!/usr/bin/env bash
# Run here, on the CPU machine, before a GPU session: downloads the wheels the GPU image lacks (keras and keras-hub
# for the keras-hub peer, with the few of their dependencies it does not have, and pytest for the kernels' on-chip
# tests, tests/test_kernels_on_gpu.py) into .whl/, and copies SST-2's train
# and dev sets from ../shared/data (which the device does not get) into .data/; git ignores both and the device call
# carries them (`carry: [".whl", ".data"]`, about 9 MB). benchmarks/gpu_session.sh installs the wheels there.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  "keras==3.15.1" "keras-hub==0.32.0" "kagglehub==1.0.3" "kagglesdk==0.1.28" "optree==0.20.0" "namex==0.1.0" \
  "pytest==9.0.3" "pluggy==1.6.0" "iniconfig==2.3.0" "pygments==2.20.0"
ls -l .whl
mkdir -p .data/sst2
cp ../shared/data/sst2/train.tsv ../shared/data/sst2/dev.tsv .data/sst2/
ls -l .data/sst2
