#!/usr/bin/env bash
# Resume every stashed reproduction run (benchmarks/stash/NAME, see reproduce.py --stash) or, when runs are
# named after HOURS (PRESET for the paper's schedule, PRESET-eN for N squeezed epochs, PRESET-sS for seed S),
# only those: each from its stash where it has one, else from the start. Naming leaves the other stashed runs
# alone, such as one that only a lent GPU trains (benchmarks/device_train.sh). The runs go detached, the
# cores shared out among them, for at most HOURS more hours of training each (default 2.2: a three-hour
# session leaves time to score, commit and run CI); a run still training from an earlier call is left
# alone. A run that finishes its epochs is then scored (K = 5000: half an hour or more on one thread, on
# top of HOURS). Each run's log, a line an epoch, goes to runs/NAME.log; its result file, the stash and
# BENCHMARKS.md's table are updated when it stops. Commit benchmarks/stash, benchmarks/results,
# BENCHMARKS.md and docs/reproductions.png before the session ends.
#
#   PYRO_VAE_DATA_DIR=../shared/data bash benchmarks/long_runs.sh [HOURS [RUN ...]]
#   PYRO_VAE_DATA_DIR=../shared/data bash benchmarks/long_runs.sh 2 burda-1l-vae burda-2l-vae
set -euo pipefail
cd "$(dirname "$0")/.."
hours="${1:-2.2}"
shift || true
python="${PYTHON:-.venv/bin/python}"
mkdir -p runs
shopt -s nullglob
named=0
busy=0  # runs named or stashed that still train from an earlier call: they keep their threads
todo=()  # "name preset epochs seed" of each run to start
# each name's preset, planned epochs, limit and seed (reproduce.run_name's inverse) and the process that
# trains it now, if one does (inference.run_lock), in one Python call
parse='import sys, reproduce
from inference.run_lock import held_by
for name in dict.fromkeys(sys.argv[1:]):
    try:
        print(name, *reproduce.parse_run_name(name), held_by(f"runs/reproduce/{name}") or "-")
    except ValueError:
        print(name, "-")'
while read -r name preset epochs limit seed holder; do
    named=$((named + 1))
    if [[ "$preset" == - ]]; then
        echo "skipping $name: not a run name (PRESET or PRESET-eEPOCHS)" >&2
        continue
    fi
    if [[ "$limit" != None ]]; then
        echo "skipping $name: a --limit smoke run; resume it by hand with its --limit" >&2
        continue
    fi
    if [[ "$holder" != - ]]; then
        echo "skipping $name: already running ($holder, log runs/$name.log)" >&2
        busy=$((busy + 1))
        continue
    fi
    todo+=("$name $preset $epochs $seed")
done < <(PYTHONPATH=benchmarks "$python" -c "$parse" "$@" $([[ $# -gt 0 ]] || for folder in benchmarks/stash/*/; do basename "$folder"; done))
if [[ $named -eq 0 ]]; then
    echo "no stashed run in benchmarks/stash and none named: bash benchmarks/long_runs.sh HOURS PRESET[-eEPOCHS][-sSEED] ..."
fi
# the cores shared out among the runs started and those still training (a lone run trains on all of them:
# burda-1l-iwae50 took 37-42 s an epoch on two threads alone, 60-90 s on one beside another run), at least
# one thread each
cores=${CORES:-$(nproc)}
sharing=$(( ${#todo[@]} + busy ))
threads=$(( sharing > 0 && cores / sharing > 1 ? cores / sharing : 1 ))
for run in "${todo[@]}"; do
    read -r name preset epochs seed <<< "$run"
    # --resume goes on from the run's checkpoint (runs/reproduce or the stash), or starts a run that has none
    OMP_NUM_THREADS=$threads nohup "$python" benchmarks/reproduce.py "$preset" --epochs "$epochs" --seed "$seed" --compile \
        --resume --max-hours "$hours" --stash benchmarks/stash --table BENCHMARKS.md --no-progress < /dev/null >> "runs/$name.log" 2>&1 &
    echo "running $name ($preset, $epochs epochs) on $threads thread(s) for at most $hours more hours of training: pid $!, log runs/$name.log"
done
