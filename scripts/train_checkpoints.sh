#!/usr/bin/env bash
# Trains the pretrained checkpoints shipped in checkpoints/ on the built-in corpora, then packs each
# (float16 weights, its training curves) into checkpoints/FAMILY with scripts/pack_checkpoint.py.
#
#   scripts/train_checkpoints.sh                  all of them, the codec before the prior
#   scripts/train_checkpoints.sh lstm transformer only these (two shells can train two at once)
#
# Names: lstm transformer transformer-folk transformer-infill musicvae musicvae-2bar musegan vqvae prior
# (transformer-folk is the transformer family on the whole folk corpus; transformer-infill the one that
# also infills, on the chorales with their voices kept apart; musicvae-2bar the 2-bar MusicVAE). Presets:
# pretrained/NAME (musgen/presets/); the 16-bar MusicVAE uses its default preset musicvae. The codec
# trains in four phases (pretrained/vqvae-base, then a new decoder on its frozen codes, then that
# decoder on with a lighter waveform loss: pretrained/vqvae-tune, then a 2,048-point head on it:
# pretrained/vqvae-stft2048 in four legs, the last without the log-mel term, the one packed); the prior trains on those codes in three
# phases (pretrained/prior, then pretrained/prior-tune without the pieces' silent ends, then that
# recipe again at a lower learning rate), and its sampling temperature is chosen on the valid split
# (scripts/tune_audio_sampling.py). MuseGAN trains in
# three (pretrained/musegan, pretrained/musegan-tune from it, then pretrained/musegan-harmony), each
# of the last two followed by scripts/calibrate_musegan.py. A run that was interrupted resumes from
# its last complete state; a finished one is only packed again. Runs that keep several saves are packed from the save with the best validation
# NLL (PICK=last packs the last one; the 16-bar MusicVAE always its last: see below).
# Environment: DATA (default data), RUNS (default runs/pretrained), OUT (default checkpoints),
# BIN (default .venv/bin). Times on a 2-core CPU are in checkpoints/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data}
RUNS=${RUNS:-runs/pretrained}
OUT=${OUT:-checkpoints}
BIN=${BIN:-.venv/bin}
PICK=${PICK:-best}
families=("$@")
[ ${#families[@]} -gt 0 ] || families=(lstm transformer transformer-folk transformer-infill musicvae musicvae-2bar musegan vqvae prior)

data_for() {  # the data set a family trains on, built when missing (a matching build is reused)
    case $1 in
        lstm | transformer | musegan)
            "$BIN/musgen" data build --corpus bach --out "$DATA/bach" >&2
            echo "$DATA/bach" ;;
        transformer-infill)  # the voices kept apart, bar by bar (musgen.data.track_layout)
            "$BIN/musgen" data build --corpus bach --out "$DATA/bach-tracks" \
                --set "tracks=[soprano,alto,tenor,bass]" --set tokenizer_params.use_velocities=false >&2
            echo "$DATA/bach-tracks" ;;
        transformer-folk | musicvae)  # the whole folk corpus: ~17 min of music21 conversion on one core
            "$BIN/musgen" data build --corpus folk --out "$DATA/folk-all" >&2
            echo "$DATA/folk-all" ;;
        musicvae-2bar)  # 1,500 tunes: music21 converts about 4 ABC tunes per second on 2 cores
            "$BIN/musgen" data build --corpus folk --limit 1500 --out "$DATA/folk" >&2
            echo "$DATA/folk" ;;
        vqvae | prior)
            "$BIN/musgen" data build --corpus bach --render --out "$DATA/bach_audio" >&2
            echo "$DATA/bach_audio" ;;
        *) echo "unknown name $1 (lstm transformer transformer-folk transformer-infill musicvae musicvae-2bar musegan vqvae prior)" >&2; exit 2 ;;
    esac
}

train_run() {  # train_run FAMILY RUN_DIR CONFIG [--set ...]: one run on $data, resumed if interrupted
    local family=$1 out=$2 config=$3
    shift 3
    local args=(--data "$data" --out "$out" --config "$config" "$@")
    [ -d "$out/state" ] && args+=(--resume)
    "$BIN/musgen" train "$family" "${args[@]}"
}

for name in "${families[@]}"; do
    data=$(data_for "$name")
    family=${name%-folk}
    family=${family%-2bar}
    family=${family%-infill}
    config=pretrained/$name
    extra=()
    [ "$name" = musicvae ] && config=musicvae  # its default preset
    [ "$name" = prior ] && extra=(--set "vqvae=$RUNS/vqvae-tune")
    if [ "$name" = transformer-infill ] || [ "$name" = vqvae ]; then
        # phase 1 (infill: suffix first; codec: the convolutional codec), phase 2 starts from it
        # (infill: the hinted order; codec: a new decoder on phase 1's frozen encoder and codebooks)
        train_run "$family" "$RUNS/$name-base" pretrained/$name-base
        extra+=(--set "train.init_from=$RUNS/$name-base")
    fi
    [ -d "$RUNS/$name/state" ] && extra+=(--resume)
    echo "== $name: $BIN/musgen train $family --data $data --out $RUNS/$name --config $config ${extra[*]}"
    start=$(date +%s)
    "$BIN/musgen" train "$family" --data "$data" --out "$RUNS/$name" --config "$config" "${extra[@]}"
    if [ "$name" = transformer ]; then  # a short last phase without transposition: Bach's own keys
        "$BIN/musgen" train "$family" --data "$data" --out "$RUNS/$name" --resume --set train.steps=2900 \
            --set data.transpose=0 --set train.max_minutes=0 --set train.eval_every=100 --set train.save_every=100
    fi
    run=$RUNS/$name
    if [ "$name" = vqvae ]; then  # phase 3: the decoder on, on the same codes (pretrained/vqvae-tune)
        train_run vqvae "$RUNS/vqvae-tune" pretrained/vqvae-tune --set "train.init_from=$run"
        # phase 4: a head writing a 2,048-point STFT, in three legs (pretrained/vqvae-stft2048; the
        # third one from stop 42)
        train_run vqvae "$RUNS/vqvae-stft2048-a" pretrained/vqvae-tune \
            --set model.decoder_n_fft=2048 --set train.stop_at=1760 --set "train.init_from=$RUNS/vqvae-tune"
        train_run vqvae "$RUNS/vqvae-stft2048" pretrained/vqvae-stft2048 --set "train.init_from=$RUNS/vqvae-stft2048-a"
        train_run vqvae "$RUNS/vqvae-stft2048-c" pretrained/vqvae-stft2048 \
            --set train.lr=0.00015 --set train.stop_at=3770 --set "train.init_from=$RUNS/vqvae-stft2048"
        # a fourth leg without the log-mel term (stops 45-46): the loss is then the STFT distance itself
        train_run vqvae "$RUNS/vqvae-stft2048-d" pretrained/vqvae-stft2048 --set loss.mel_weight=0 \
            --set train.lr=0.00015 --set train.steps=8000 \
            --set "train.init_from=$RUNS/vqvae-stft2048-c"
        run=$RUNS/vqvae-stft2048-d
    fi
    if [ "$name" = prior ]; then  # phase 2: trained on without each piece's trailing silence
        train_run prior "$RUNS/prior-tune" pretrained/prior-tune --set "vqvae=$RUNS/vqvae-stft2048-d" \
            --set "train.init_from=$run"
        # phase 3 (stop 42): the same recipe again from phase 2, a 6,000-step schedule at lr 2.5e-4
        train_run prior "$RUNS/prior-tune2" pretrained/prior-tune --set "vqvae=$RUNS/vqvae-stft2048-d" \
            --set "train.init_from=$RUNS/prior-tune" --set train.lr=0.00025 --set train.steps=6000 \
            --set train.stop_at=5690
        run=$RUNS/prior-tune2
    fi
    if [ "$name" = musegan ]; then  # phase 2: held notes struck again (pretrained/musegan-tune), its
        # rests calibrated and temperature chosen (the stop-36 checkpoint); phase 3: fine-tuned from it
        # with the harmony table on (pretrained/musegan-harmony), then its sampling calibrated to the
        # training data (each voice's intervals, pitch classes per bar, repeated notes, rests), the grid
        # point chosen on the valid split
        train_run musegan "$RUNS/musegan-tune" pretrained/musegan-tune --set "train.init_from=$run"
        "$BIN/python" scripts/calibrate_musegan.py "$RUNS/musegan-tune" --data "$data" --out "$RUNS/musegan-tune-calibrated"
        train_run musegan "$RUNS/musegan-harmony" pretrained/musegan-harmony \
            --set "train.init_from=$RUNS/musegan-tune-calibrated"
        "$BIN/python" scripts/calibrate_musegan.py "$RUNS/musegan-harmony" --data "$data" --out "$RUNS/musegan-calibrated" \
            --grid 0.9,0.8 --harmony 1,1.5 --voice-temperatures upc --intervals \
            --out-json scripts/results/calibrate_musegan.json
        run=$RUNS/musegan-calibrated
    fi
    echo "== $name trained in $(( ($(date +%s) - start) / 60 )) min"
    pick=$PICK
    # MusicVAE: held-out accuracy kept rising long after held-out NLL's best save (step 4,000 of 13,000;
    # the model grows overconfident), and the issue's measures are accuracies: the last save
    [ "$name" = musicvae ] && pick=last
    "$BIN/python" scripts/pack_checkpoint.py "$run" "$OUT/$name" --pick "$pick"
    if [ "$name" = prior ]; then  # its temperature per codebook level, chosen by continuations of valid
        # prompts (stop 43: the grid searched, about 50 min on one core; it ran as six parallel parts)
        grid=1.2:1.0,1.2/1.0/0.3/0.1:1.0,1.3/1.0/0.3/0.1:1.0,1.2/1.0/0.5/0.3:1.0,1.2/1.0/0.3/0.3:1.0
        grid+=,1.2/1.0/0.2/0.2:1.0,1.4/1.0/0.3/0.1:1.0,1.3/1.0/0.2/0.2:1.0,1.3/1.1/0.3/0.1:1.0
        grid+=,1.3/0.9/0.3/0.1:1.0,1.4/1.0/0.2/0.2:1.0,1.3/1.0/0.1/0.1:1.0,1.3/1.0/0.05/0.05:1.0
        grid+=,1.3/0.9/0.1/0.1:1.0,1.3/1.1/0.1/0.1:1.0,1.3/1.0/0.1/0.05:1.0
        "$BIN/python" scripts/tune_audio_sampling.py "$OUT/$name" --data "$data" --grid "$grid" \
            --seeds 0,100,200,300 --write
        # then, at that temperature, the cap on runs of digital silence (--max-silence; stop 49: no
        # limit, 0.1 s or none at all, seeds 0-500, about 20 min on one core)
        t=$("$BIN/python" -c "import json, sys; t = json.load(open(sys.argv[1]))['sampling']['temperature']; \
print('/'.join(map(str, t)) if isinstance(t, list) else t)" "$OUT/$name/musgen.json")
        "$BIN/python" scripts/tune_audio_sampling.py "$OUT/$name" --data "$data" \
            --grid "$t:1.0:inf,$t:1.0:0.1,$t:1.0:0" --seeds 0,100,200,300,400,500 --write
    fi
    if [ "$name" = musicvae ]; then  # the density / pitch attribute vectors (musgen interpolate --attribute)
        "$BIN/python" scripts/attribute_vectors.py "$OUT/$name" --data "$data" --write
        # and the learned p(z) its samples are drawn from (bar latents: see musgen/models/latent_prior.py)
        # (fitted to the tunes in their own keys, temperature 0.4 chosen on the valid split:
        # docs/measured.md, MusicVAE, stop 39)
        "$BIN/python" scripts/fit_latent_prior.py "$OUT/$name" --data "$data" --temperature 0.4 --write
    fi
done
