#!/usr/bin/env bash
# Trains the pretrained checkpoints shipped in checkpoints/ on the built-in corpora, then packs each
# (float16 weights, its training curves) into checkpoints/FAMILY with scripts/pack_checkpoint.py.
#
#   scripts/train_checkpoints.sh                  all six families, the codec before the prior
#   scripts/train_checkpoints.sh lstm transformer only these (two shells can train two at once)
#
# Presets: configs/pretrained/FAMILY.yaml (the codec uses the default configs/vqvae.yaml). A run that
# was interrupted resumes from its last complete state; a finished one is only packed again.
# Environment: DATA (default data), RUNS (default runs/pretrained), OUT (default checkpoints),
# BIN (default .venv/bin). Times on a 2-core CPU are in checkpoints/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data}
RUNS=${RUNS:-runs/pretrained}
OUT=${OUT:-checkpoints}
BIN=${BIN:-.venv/bin}
families=("$@")
[ ${#families[@]} -gt 0 ] || families=(lstm transformer musicvae musegan vqvae prior)

data_for() {  # the data set a family trains on, built when missing (a matching build is reused)
    case $1 in
        lstm | transformer | musegan)
            "$BIN/musgen" data build --corpus bach --out "$DATA/bach" >&2
            echo "$DATA/bach" ;;
        musicvae)  # 1,500 tunes: music21 converts about 4 ABC tunes per second on 2 cores
            "$BIN/musgen" data build --corpus folk --limit 1500 --out "$DATA/folk" >&2
            echo "$DATA/folk" ;;
        vqvae | prior)
            "$BIN/musgen" data build --corpus bach --render --out "$DATA/bach_audio" >&2
            echo "$DATA/bach_audio" ;;
        *) echo "unknown family $1 (lstm transformer musicvae musegan vqvae prior)" >&2; exit 2 ;;
    esac
}

for family in "${families[@]}"; do
    data=$(data_for "$family")
    config=configs/pretrained/$family.yaml
    extra=()
    [ "$family" = vqvae ] && config=configs/vqvae.yaml
    [ "$family" = prior ] && extra=(--set "vqvae=$RUNS/vqvae")
    [ -d "$RUNS/$family/state" ] && extra+=(--resume)
    echo "== $family: $BIN/musgen train $family --data $data --out $RUNS/$family --config $config ${extra[*]}"
    start=$(date +%s)
    "$BIN/musgen" train "$family" --data "$data" --out "$RUNS/$family" --config "$config" "${extra[@]}"
    echo "== $family trained in $(( ($(date +%s) - start) / 60 )) min"
    "$BIN/python" scripts/pack_checkpoint.py "$RUNS/$family" "$OUT/$family"
done
