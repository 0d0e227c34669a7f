#!/usr/bin/env bash
# Short, equal-budget sweeps of the symbolic language models' recipes (issue 17): every run trains
# for about BUDGET minutes of one CPU core (OMP_NUM_THREADS=1; two runs share a 2-core machine), its
# step count chosen from the measured step time so that the cosine schedule ends inside the budget,
# and is judged by its held-out (valid split) NLL at the end. Results: scripts/results/sweep_lm.json
# (scripts/sweep_results.py collects them from RUNS/*/metrics.jsonl).
#
#   scripts/sweep_lm.sh NAME...      run the named configurations (see the table below), in order
#
# Environment: DATA (default data), RUNS (default runs/sweep), BIN (default .venv/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data}
RUNS=${RUNS:-runs/sweep}
BIN=${BIN:-.venv/bin}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
T=pretrained/transformer
L=pretrained/lstm
common=(--set train.eval_batches=0 --set train.save_every=100000 --set train.log_every=10 --set train.max_minutes=12)

# name | family | data | preset | overrides (steps sized for ~6 min of one core, measured step times)
# shellcheck source=scripts/sweep_lib.sh
source scripts/sweep_lib.sh

mkdir -p "$RUNS"
for name in "$@"; do
    case $name in
        # Music Transformer, bach, REMI: width/depth, learning rate, context, precision, tokenizer
        mt-4x192) run "$name" transformer "$DATA/bach" $T --set train.steps=360 --set train.eval_every=360 \
            --set train.mixed_precision=bf16 --set train.warmup_steps=40 ;;
        mt-4x192-lr2e-3) run "$name" transformer "$DATA/bach" $T --set train.steps=360 --set train.eval_every=360 \
            --set train.mixed_precision=bf16 --set train.warmup_steps=40 --set train.lr=0.002 ;;
        mt-6x256) run "$name" transformer "$DATA/bach" $T --set train.steps=180 --set train.eval_every=180 \
            --set train.mixed_precision=bf16 --set train.warmup_steps=20 --set model.d_model=256 \
            --set model.num_layers=6 --set model.num_heads=8 --set model.d_ff=1024 --set train.lr=0.0006 ;;
        mt-4x192-ctx256) run "$name" transformer "$DATA/bach" $T --set train.steps=360 --set train.eval_every=360 \
            --set train.mixed_precision=bf16 --set train.warmup_steps=40 --set data.seq_len=256 \
            --set train.batch_size=16 --set model.max_relative_position=256 ;;
        mt-4x192-drop0) run "$name" transformer "$DATA/bach" $T --set train.steps=360 --set train.eval_every=360 \
            --set train.mixed_precision=bf16 --set train.warmup_steps=40 --set model.dropout=0.0 ;;
        mt-4x192-fp32) run "$name" transformer "$DATA/bach" $T --set train.steps=270 --set train.eval_every=270 \
            --set train.mixed_precision=no --set train.warmup_steps=30 ;;
        mt-4x192-tsd) run "$name" transformer "$DATA/bach-tsd" $T --set train.steps=360 --set train.eval_every=360 \
            --set train.mixed_precision=bf16 --set train.warmup_steps=40 ;;
        # LSTM, bach, REMI
        lstm-2x384) run "$name" lstm "$DATA/bach" $L --set train.steps=260 --set train.eval_every=260 \
            --set train.warmup_steps=30 ;;
        lstm-2x384-ctx512) run "$name" lstm "$DATA/bach" $L --set train.steps=260 --set train.eval_every=260 \
            --set train.warmup_steps=30 --set data.seq_len=512 --set train.batch_size=16 ;;
        lstm-2x512-lr3e-3) run "$name" lstm "$DATA/bach" $L --set train.steps=160 --set train.eval_every=160 \
            --set train.warmup_steps=20 --set model.hidden_size=512 --set train.lr=0.003 ;;
        *) echo "unknown sweep configuration $name" >&2; exit 2 ;;
    esac
done
