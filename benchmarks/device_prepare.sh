#!/usr/bin/env bash
# Run HERE, before sending benchmarks/device_check.sh or device_train.sh to a lent GPU machine, which reaches no package index:
# puts into .device/ (git-ignored, carried with the call) the wheels of the pure-Python packages that its
# image lacks (pyro-ppl, pyro-api, arviz and two of arviz's dependencies, at the versions of this .venv) and
# MNIST's four idx files, gzipped (about 11 MB). Then:
#   device run, carry [".device"]: bash benchmarks/device_check.sh   (or: bash benchmarks/device_train.sh MINUTES NAME)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${PYRO_VAE_DATA_DIR:-../shared/data}
rm -rf .device && mkdir -p .device/wheels .device/data
versions=$(.venv/bin/pip freeze | grep -iE '^(pyro-ppl|pyro-api|arviz|xarray-einstats|h5netcdf)==')
.venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform any -d .device/wheels $versions
for f in "$data"/MNIST/raw/*-ubyte; do gzip -c "$f" > ".device/data/$(basename "$f").gz"; done
du -sh .device
