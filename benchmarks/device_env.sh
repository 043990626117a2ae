# Sourced by the scripts that run on a lent GPU machine (device_check.sh, device_train.sh): the pure-Python
# wheels and MNIST that benchmarks/device_prepare.sh put into .device/ (the machine reaches no package index),
# installed into /tmp/site and /tmp/data, and the environment that points Python and the project at them.
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if [ -d .device/wheels ]; then  # installed once per machine: a later call on a still-warm one finds them
    if [ -d /tmp/site/pyro ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target /tmp/site .device/wheels/*.whl; then
        export PYTHONPATH=/tmp/site:$PWD
    fi
fi
if [ -d .device/data ]; then
    mkdir -p /tmp/data/MNIST/raw
    for f in .device/data/*.gz; do gunzip -c "$f" > "/tmp/data/MNIST/raw/$(basename "$f" .gz)"; done
    export PYRO_VAE_DATA_DIR=/tmp/data
fi
