#!/usr/bin/env bash
# Resume every stashed reproduction run (benchmarks/stash/NAME, see reproduce.py --stash), detached, one
# thread each, for at most HOURS more hours of training each (default 2.2: a three-hour session leaves
# time to score, commit and run CI). Each run's log goes to runs/NAME.log; its result file, the stash and
# BENCHMARKS.md's table are updated when it stops. Commit benchmarks/stash, benchmarks/results,
# BENCHMARKS.md and docs/reproductions.png before the session ends.
#
#   PYRO_VAE_DATA_DIR=../shared/data bash benchmarks/long_runs.sh [HOURS]
set -euo pipefail
cd "$(dirname "$0")/.."
hours="${1:-2.2}"
python="${PYTHON:-.venv/bin/python}"
mkdir -p runs
shopt -s nullglob
started=0
for folder in benchmarks/stash/*/; do
    name="$(basename "$folder")"
    if [[ "$name" =~ -n[0-9]+$ ]]; then
        echo "skipping $name: a --limit smoke run; resume it by hand with its --limit" >&2
        continue
    fi
    result="benchmarks/results/$name.json"
    if [[ ! -f "$result" ]]; then
        echo "skipping $name: no $result to say which preset and schedule it runs" >&2
        continue
    fi
    # the preset and the planned epochs, from the run's own result file
    read -r preset epochs < <("$python" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["preset"], r["epochs_planned"])' "$result")
    OMP_NUM_THREADS=1 nohup "$python" benchmarks/reproduce.py "$preset" --epochs "$epochs" --compile --resume \
        --max-hours "$hours" --stash benchmarks/stash --table BENCHMARKS.md --no-progress >> "runs/$name.log" 2>&1 &
    echo "resumed $name ($preset, $epochs epochs) for at most $hours hours: pid $!, log runs/$name.log"
    started=$((started + 1))
done
if [[ $started -eq 0 ]]; then
    echo "no stashed run in benchmarks/stash: start one with python benchmarks/reproduce.py PRESET --compile --stash benchmarks/stash --max-hours H"
fi
