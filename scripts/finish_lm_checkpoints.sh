#!/usr/bin/env bash
# After scripts/train_checkpoints.sh lstm transformer transformer-folk: chooses each language model's
# recommended sampling settings on the valid split (scripts/tune_sampling.py --write), evaluates it on
# the test split with those settings (`musgen eval`: held-out NLL, 32 samples vs held-out excerpts of
# 32 quarter notes next to a real-vs-real reference; eval.json in the checkpoint) and draws the piano
# rolls of two samples for the README (docs/images/NAME_sample_N.png).
#
#   scripts/finish_lm_checkpoints.sh [NAME...]     default: lstm transformer transformer-folk
#
# Environment: DATA (default data), OUT (default checkpoints), BIN (default .venv/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data}
OUT=${OUT:-checkpoints}
BIN=${BIN:-.venv/bin}
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(lstm transformer transformer-folk)
for name in "${names[@]}"; do
    case $name in
        transformer-folk) data=$DATA/folk-all ;;
        *) data=$DATA/bach ;;
    esac
    "$BIN/python" scripts/tune_sampling.py "$OUT/$name" --data "$data" --write \
        --out "scripts/results/tune_sampling_$name.json"
    "$BIN/musgen" eval --checkpoint "$OUT/$name" --data "$data" --out "$OUT/$name/eval.json" \
        --save-samples "/tmp/musgen-eval-samples-$name"
    for i in 0 1; do
        "$BIN/musgen" plot "/tmp/musgen-eval-samples-$name/sample_00$i.mid" --out "docs/images/${name}_sample_$i.png" \
            --title "$name, sample $i (seed 0, its recommended sampling settings)"
    done
done
