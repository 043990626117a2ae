#!/usr/bin/env bash
# Train a reproduction run on a lent GPU for MINUTES minutes of training steps, from its stash
# (benchmarks/stash/NAME) where it has one, else from the start, then bring its checkpoint back: a session's
# few minutes of device time move a k=50 run as far as hours of this CPU (11 minutes on an H200 trained 202
# epochs of burda-1l-iwae50 at about 3.3 s each; this CPU takes 37 s an epoch on both cores, so about two
# hours).
#   here:  bash benchmarks/device_prepare.sh                (wheels and MNIST into .device/)
#   there: bash benchmarks/device_train.sh MINUTES NAME [NAME ...]   (the device tool's run, carrying .device;
#          several runs train side by side on the card)
#   here:  bash benchmarks/device_train.sh --take FOLDER    (FOLDER: the run's files_at; puts the checkpoint
#          into benchmarks/stash and runs/reproduce, the result file into benchmarks/results)
# There, the run resumes from the stash's copy under $OUT/stash and stashes itself there when its minutes are
# spent (or at a SIGTERM, sent a few minutes after them in case compiling or checkpoints run long); its result
# file goes to $OUT/results and its log to $OUT/NAME.log: the device tool brings back at most 8 files.
# A checkpoint moves between devices: parameters and optimizer state load onto the run's device, and the
# CUDA random state is used only where there is CUDA, so the run is continued, not replayed bit for bit.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == --take ]]; then
    from=${2:?bash benchmarks/device_train.sh --take FOLDER (the files_at of the device run)}
    for folder in "$from"/stash/*/; do
        name=$(basename "$folder")
        holder=$("${PYTHON:-.venv/bin/python}" -c "from inference.run_lock import held_by
print(held_by('runs/reproduce/$name') or '')")
        if [[ -n "$holder" ]]; then
            echo "refusing: $name still trains here ($holder); stop it (SIGTERM) before taking the card's checkpoint" >&2
            exit 1
        fi
        rm -rf "benchmarks/stash/$name" "runs/reproduce/$name"  # the card's checkpoint is the newer one
        mkdir -p "benchmarks/stash/$name" "runs/reproduce/$name" benchmarks/results
        cp "$folder"/* "benchmarks/stash/$name/" && cp "$folder"/* "runs/reproduce/$name/"
        cp "$from/results/$name.json" benchmarks/results/
        if [[ -f "$from/$name.log" ]]; then cat "$from/$name.log" >> "runs/$name.log"; fi
        "${PYTHON:-.venv/bin/python}" -c "import json, sys; r = json.load(open(sys.argv[1]))
print(f'took {r[\"run\"]}: {r[\"epochs\"]} of {r[\"epochs_planned\"]} epochs, {r[\"steps\"]} steps, {r[\"train_seconds\"] / 3600:.2f} h of training')" \
            "benchmarks/results/$name.json"
    done
    exit 0
fi
minutes=${1:?bash benchmarks/device_train.sh MINUTES NAME [NAME ...]}
shift
[[ $# -gt 0 ]] || { echo "bash benchmarks/device_train.sh MINUTES NAME [NAME ...]: name a run" >&2; exit 2; }
out=${OUT:-/tmp/device-train}
mkdir -p "$out/stash"
source benchmarks/device_env.sh  # the carried wheels and MNIST
python3 -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA', 'torch', torch.__version__)"
hours=$(python3 -c "print($minutes / 60)")
limit=$(python3 -c "print(round($minutes * 60 + 150))")  # seconds: compiling and checkpoints are not training time
parse='import sys, reproduce; r = reproduce.parse_run_name(sys.argv[1]); print(r.preset, r.epochs, r.seed)'
train() {  # train NAME: resume it from its stash's copy under $out, log to $out/NAME.log
    local name=$1 preset epochs seed
    read -r preset epochs seed < <(PYTHONPATH=benchmarks:$PYTHONPATH python3 -c "$parse" "$name")
    if [[ -d "benchmarks/stash/$name" ]]; then cp -r "benchmarks/stash/$name" "$out/stash/"; fi
    timeout --signal=TERM "$limit" python3 benchmarks/reproduce.py "$preset" --epochs "$epochs" \
        --seed "$seed" --device "${DEVICE:-cuda}" --compile --resume --max-hours "$hours" --stash "$out/stash" \
        --results "$out/results" --no-progress 2>&1 | { grep --line-buffered -v "UserWarning\|warnings.warn" || true; } \
        > "$out/$name.log"
}
# several runs share the card side by side: at batch 20 one run leaves most of it idle
names=("$@") pids=()
for name in "${names[@]}"; do
    train "$name" &
    pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "${names[$i]} failed: see its log" >&2; status=1; }
done
for name in "${names[@]}"; do tail -n 3 "$out/$name.log"; done
exit $status
