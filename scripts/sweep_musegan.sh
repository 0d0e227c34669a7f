#!/usr/bin/env bash
# Equal-budget sweeps of MuseGAN recipes for four-voice chorales (issue 20): every run trains for
# BUDGET minutes of one CPU core (OMP_NUM_THREADS=1; two runs share a 2-core machine; the learning
# rate is constant, so a time budget ends no schedule early), then scripts/eval_musegan.py scores
# SAMPLES generated phrases of it against the held-out phrases (voice polyphony, QN, UPC, EB, TD,
# accompaniment TD, diversity) into $RUNS/NAME/eval_musegan.json.
#
#   scripts/sweep_musegan.sh NAME...      run the named configurations (see the table below), in order
#
# Environment: DATA (default data), RUNS (default runs/sweep_musegan), BIN (default .venv/bin),
# BUDGET (minutes per run, default 15), SAMPLES (default 256).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data}
RUNS=${RUNS:-runs/sweep_musegan}
BIN=${BIN:-.venv/bin}
BUDGET=${BUDGET:-15}
SAMPLES=${SAMPLES:-256}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
common=(--set train.steps=1000000 --set "train.max_minutes=$BUDGET" --set train.eval_every=250
    --set train.save_every=100000 --set train.keep_checkpoints=${KEEP:-1} --set train.log_every=10)
V=(--set model.output=voice)

# shellcheck source=scripts/sweep_lib.sh
source scripts/sweep_lib.sh

after_run() {  # NAME DATA: the issue's piano-roll measures of the run's last checkpoint
    "$BIN/python" scripts/eval_musegan.py --data "$2" --runs "$RUNS/$1" --num-samples "$SAMPLES" \
        --out "$RUNS/$1/eval_musegan.json" > "$RUNS.$1.eval.log" 2>&1
}

mkdir -p "$RUNS"
for name in "$@"; do
    case $name in
        multihot) run "$name" musegan "$DATA/bach" musegan ;;  # today's recipe, the baseline
        voice) run "$name" musegan "$DATA/bach" musegan "${V[@]}" ;;
        voice-gumbel) run "$name" musegan "$DATA/bach" musegan "${V[@]}" --set model.voice_relax=gumbel ;;
        voice-ncritic3) run "$name" musegan "$DATA/bach" musegan "${V[@]}" --set loss.n_critic=3 ;;
        voice-lr3e-4) run "$name" musegan "$DATA/bach" musegan "${V[@]}" --set train.lr=0.0003 ;;
        voice-batch64) run "$name" musegan "$DATA/bach" musegan "${V[@]}" --set train.batch_size=64 ;;
        voice-w48) run "$name" musegan "$DATA/bach" musegan "${V[@]}" --set model.gen_channels=48 \
            --set model.critic_channels=48 ;;
        voice-2bar) run "$name" musegan "$DATA/bach" musegan "${V[@]}" --set data.num_bars=2 ;;
        voice-composer) run "$name" musegan "$DATA/bach" musegan "${V[@]}" --set model.mode=composer ;;
        voice16) run "$name" musegan "$DATA/bach" musegan "${V[@]}" --set model.time_grid=sixteenth ;;
        voice16-gumbel) run "$name" musegan "$DATA/bach" musegan "${V[@]}" --set model.time_grid=sixteenth \
            --set model.voice_relax=gumbel ;;
        voice16-paired1) run "$name" musegan "$DATA/bach" musegan "${V[@]}" --set model.time_grid=sixteenth \
            --set loss.paired_weight=1.0 ;;
        voice16-gumbel-paired1) run "$name" musegan "$DATA/bach" musegan "${V[@]}" \
            --set model.time_grid=sixteenth --set model.voice_relax=gumbel --set loss.paired_weight=1.0 ;;
        voice16r-paired03) run "$name" musegan "$DATA/bach" musegan "${V[@]}" --set model.time_grid=sixteenth \
            --set model.voice_range=data --set loss.paired_weight=0.3 --set train.save_every=250 ;;
        voices) run "$name" musegan "$DATA/bach" musegan_voices ;;  # the candidate recipe (55 min)
        pretrained-intervals) run "$name" musegan "$DATA/bach" musegan_voices --set model.voice_leading=false \
            --set train.save_every=250 ;;  # musegan_voices without voice leading
        voices-lead-data) run "$name" musegan "$DATA/bach" musegan_voices --set model.voice_leading_init=data \
            --set train.save_every=250 ;;  # the transition table starts at the data's
        voices-lead-fixed) run "$name" musegan "$DATA/bach" musegan_voices \
            --set model.voice_leading_init=data_fixed --set train.save_every=250 ;;  # ... and stays there
        voices-lead-half) run "$name" musegan "$DATA/bach" musegan_voices --set model.voice_leading_init=data \
            --set model.voice_leading_scale=0.5 --set train.save_every=250 ;;  # half the data's log odds
        voices-lead-gumbel) run "$name" musegan "$DATA/bach" musegan_voices --set model.voice_leading_init=data \
            --set model.voice_relax=gumbel --set model.voice_inference=draw \
            --set train.save_every=250 ;;  # the 16ths drawn from the data's transitions, in training and sampling
        voices-draw-pos4 | voices-draw-pos16) run "$name" musegan "$DATA/bach" musegan_voices \
            --set model.voice_leading_init=data --set model.voice_relax=gumbel --set model.voice_inference=draw \
            --set "model.voice_leading_positions=${name#voices-draw-pos}" \
            --set train.save_every=250 ;;  # ... with one table per place in the beat (4) or bar (16)
        ft-paired10) run "$name" musegan "$DATA/bach" pretrained/musegan --set train.init_from=checkpoints/musegan \
            --set loss.paired_weight=10 --set train.save_every=250 ;;  # the shipped model, accompaniment weighted up
        ft-paired10-tf) run "$name" musegan "$DATA/bach" pretrained/musegan --set train.init_from=checkpoints/musegan \
            --set loss.paired_weight=10 --set loss.paired_teacher_forced=true \
            --set train.save_every=250 ;;  # ... its voice leading scored from the real previous 16th
        ft-restrikes) run "$name" musegan "$DATA/bach" pretrained/musegan --set train.init_from=checkpoints/musegan \
            --set model.restrikes=true --set train.save_every=250 ;;  # the shipped model, held notes struck again
        ft-restrikes-paired10) run "$name" musegan "$DATA/bach" pretrained/musegan \
            --set train.init_from=checkpoints/musegan --set model.restrikes=true --set loss.paired_weight=10 \
            --set train.save_every=250 ;;  # ... with accompaniment weighted up
        ft-harmony) run "$name" musegan "$DATA/bach" pretrained/musegan-tune --set train.init_from=checkpoints/musegan \
            --set model.harmony=true --set train.save_every=250 ;;  # the shipped model, voices led by the soprano's intervals
        voice-cond08) run "$name" musegan "$DATA/bach" musegan "${V[@]}" --set model.condition_prob=0.8 ;;
        *) echo "unknown sweep configuration $name" >&2; exit 2 ;;
    esac
done
