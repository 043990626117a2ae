#!/usr/bin/env bash
# Every CUDA check and GPU benchmark of the project, in one call on a lent GPU machine (at most 9 minutes,
# each step under its own time limit): the CUDA-marked tests, the SVI throughput on cuda (hand loop eager and
# compiled, Pyro, fit eager and compiled; batch 128 and 512, and IWAE with K = 5), fit under torchrun with
# NCCL, the VampPrior's density against Pyro's mixture, the compiled step of the two k=50 reproduction presets
# (benchmarks/preset_pace.py: the hours of their schedules on this card), and one epoch of burda-2l-iwae50.
# Figures go to BENCHMARKS.md with the card's name.
#   here:  bash benchmarks/device_prepare.sh            (wheels and MNIST into .device/)
#   there: bash benchmarks/device_check.sh [STEP ...]   (the device tool's run, carrying .device; STEPs: only those)
# It writes its log (device_check.txt) and the short run's result file under $OUT (the device tool brings that
# folder back, at most 8 files), else under /tmp/device-check.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/device-check}
mkdir -p "$out"
source benchmarks/device_env.sh  # the carried wheels and MNIST
status=0
log="$out/device_check.txt"  # one log: the device tool brings back at most 8 files
only=" $* "  # bash benchmarks/device_check.sh [STEP ...]: only the steps named (a rerun after a fix), else all
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $log under a header, remember a failure
    local name=$1 limit=$2; shift 2
    [[ "$only" == "  " || "$only" == *" $name "* ]] || return 0
    echo "== $name: $*" | tee -a "$log"
    timeout "$limit" "$@" 2>&1 | grep -v "UserWarning\|warnings.warn" | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "== $name failed with $rc" | tee -a "$log"; status=1; }
}
step gpu 30 python3 -c "import torch, pyro; print(torch.cuda.get_device_name(), 'torch', torch.__version__,
    'cuda', torch.version.cuda, 'pyro', pyro.__version__)"
step cuda_tests 100 python3 -m pytest -q -m cuda -p no:cacheprovider tests/test_compiled.py tests/test_densities.py
loops=torch_compiled,pyro_bare,fit,fit_compiled
step throughput_128 80 python3 benchmarks/svi_throughput.py --device cuda --steps 300 --rounds 3 --only $loops
step throughput_512 90 python3 benchmarks/svi_throughput.py --device cuda --steps 200 --rounds 2 --batch-size 512 --only $loops
step throughput_iwae5 60 python3 benchmarks/svi_throughput.py --device cuda --steps 200 --rounds 2 --particles 5 --only $loops
# DDP on one GPU: torchrun with one rank (NCCL) against a plain process, same per-rank batch
step ddp_1gpu 90 python3 benchmarks/ddp_scaling.py --device cuda --processes 1 --steps 300 --warmup 30 --rounds 2
# the VampPrior's matrix-product density (float64) against Pyro's mixture on cuda: equal log p(x), and the speed
step vamp_density 60 python3 benchmarks/vamp_density.py --device cuda --images 64 --train-steps 100 --rounds 1
# the GPU-sized presets: each one's compiled step on cuda and the hours of its schedule at that pace, and one
# short epoch of burda-2l-iwae50 end to end (its full run: the same command without --epochs/--limit, with
# --compile --resume); its result file, with the epoch's train_seconds, lands in $out/results
step preset_pace 60 python3 benchmarks/preset_pace.py burda-1l-iwae50 burda-2l-iwae50 --device cuda --steps 100 --rounds 1
step reproduce_burda-2l-iwae50 60 python3 benchmarks/reproduce.py burda-2l-iwae50 --device cuda --epochs 1 \
    --limit 20000 --eval-samples 100 --no-progress --out /tmp/runs --results "$out/results"
exit $status
