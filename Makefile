# The two commands a new user runs on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo
# demo-train trains each tiny model for one minute of wall time, whatever the machine.
DEMO_BUDGET := --set train.steps=100000 --set train.max_minutes=1 --set train.eval_every=500 --set train.save_every=100000

.PHONY: install demo demo-train test test-slow lint bench clean

# fluidsynth (Debian package, when root with apt) renders MIDI to audio with a GM soundfont; without
# it `musgen render` and audio data builds use RustySynth (the midirenderer wheel) with the same
# soundfont. chromium (Debian package, the same way) opens the `musgen report` page in the tests;
# without it that test is skipped.
# torch is pinned to the CPU wheel that ships with this machine image; a GPU user installs the
# torch build of their choice first and the rest installs on top of it.
$(VENV)/.installed: pyproject.toml
	command -v fluidsynth >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& (apt-get update -qq && apt-get install -y -qq fluidsynth) >/dev/null 2>&1 \
		|| echo "note: fluidsynth not installed; musgen render uses RustySynth instead"; }
	command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 \
		|| echo "note: chromium not installed; the test of the report page in a browser is skipped"; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,ui,tensorboard]'
	touch $@

install: $(VENV)/.installed

# The demo on the pretrained checkpoints (checkpoints/, see checkpoints/README.md), a few minutes on
# a 2-core CPU: builds the built-in Bach data set and 200 folk tunes (for held-out primers), then
# samples every family: Music Transformer (chorales and folk tunes) and LSTM pieces, each with the
# sampling settings its checkpoint recommends, a transformer continuation of a held-out chorale,
# 16-bar MusicVAE samples and an interpolation between two held-out 16-bar folk phrases, MuseGAN
# four-voice phrases and a harmonisation of a held-out soprano, two bars of a held-out chorale
# infilled and its alto regenerated (the infilling transformer), a codec round trip of a rendered
# chorale and two audio-prior continuations of it; renders and plots the samples, evaluates the
# transformer (held-out NLL, musical statistics of its samples next to the held-out pieces') and
# writes one report page.
CKPT ?= checkpoints
SOURCE = $(BIN)/python -c "import sys; from musgen.data.dataset import source_file; print(source_file(sys.argv[1], 'test', int(sys.argv[2])))"
MEDIA = --render --plot
demo: install
	$(BIN)/musgen data build --corpus bach --out $(DEMO)/data/bach
	$(BIN)/musgen data build --corpus folk --limit 200 --out $(DEMO)/data/folk
	rm -rf $(DEMO)/samples $(DEMO)/eval $(DEMO)/report
	$(BIN)/musgen sample --checkpoint $(CKPT)/transformer --out $(DEMO)/samples/transformer \
		--num-samples 3 --length 512 --seed 0 $(MEDIA)
	$(BIN)/musgen sample --checkpoint $(CKPT)/transformer --out $(DEMO)/samples/transformer-primed \
		--prime $$($(SOURCE) $(DEMO)/data/bach 0) --num-samples 2 --length 384 --seed 0 $(MEDIA)
	$(BIN)/musgen sample --checkpoint $(CKPT)/lstm --out $(DEMO)/samples/lstm \
		--num-samples 3 --length 512 --seed 0 $(MEDIA)
	$(BIN)/musgen sample --checkpoint $(CKPT)/transformer-folk --out $(DEMO)/samples/transformer-folk \
		--num-samples 3 --length 384 --seed 0 $(MEDIA)
	$(BIN)/musgen interpolate $$($(BIN)/python scripts/demo_clips.py $(DEMO)/data/folk $(CKPT)/musicvae 2) \
		--checkpoint $(CKPT)/musicvae --steps 5 --out $(DEMO)/samples/musicvae-interpolation
	$(BIN)/musgen sample --checkpoint $(CKPT)/musicvae --out $(DEMO)/samples/musicvae \
		--num-samples 3 --temperature 0.5 --seed 0 $(MEDIA)
	$(BIN)/musgen sample --checkpoint $(CKPT)/musegan --out $(DEMO)/samples/musegan \
		--num-samples 3 --bars 8 --seed 0 $(MEDIA)
	$(BIN)/musgen sample --checkpoint $(CKPT)/musegan --out $(DEMO)/samples/musegan-harmonised \
		--condition-track $$($(SOURCE) $(DEMO)/data/bach 0) --track soprano --num-samples 2 --seed 0 $(MEDIA)
	$(BIN)/musgen infill $$($(SOURCE) $(DEMO)/data/bach 1) --bars 5-6 --checkpoint $(CKPT)/transformer-infill \
		--out $(DEMO)/samples/infill-bars --seed 0 $(MEDIA)
	$(BIN)/musgen infill $$($(SOURCE) $(DEMO)/data/bach 1) --bars 1-8 --track alto \
		--checkpoint $(CKPT)/transformer-infill --out $(DEMO)/samples/infill-alto --seed 0 $(MEDIA)
	$(BIN)/musgen render $$($(SOURCE) $(DEMO)/data/bach 0) --out $(DEMO)/samples/audio/prompt.wav \
		--sample-rate 16000 --max-seconds 4
	$(BIN)/musgen reconstruct $(DEMO)/samples/audio/prompt.wav --checkpoint $(CKPT)/vqvae \
		--out $(DEMO)/samples/audio/reconstruction
	$(BIN)/musgen sample --checkpoint $(CKPT)/prior --prime $(DEMO)/samples/audio/prompt.wav \
		--seconds 4 --num-samples 2 --seed 0 --out $(DEMO)/samples/audio/continuations
	$(BIN)/musgen eval --checkpoint $(CKPT)/transformer --data $(DEMO)/data/bach --num-samples 4 \
		--out $(DEMO)/eval/transformer.json
	$(BIN)/musgen report $(CKPT)/transformer --samples $(DEMO)/samples --eval $(DEMO)/eval/transformer.json \
		--out $(DEMO)/report
	@echo "MIDI, WAV and PNG samples in $(DEMO)/samples/; the report page: $(DEMO)/report/index.html"

# The previous demo, training instead of loading: builds the built-in Bach data set, trains each tiny
# model for one minute, samples from each (the transformer continues a held-out chorale); 400 folk
# tunes, a tiny MusicVAE and an interpolation; a tiny MuseGAN and a harmonisation; 60 chorales
# rendered to audio, a tiny codec and a tiny audio prior, a codec round trip and two continuations.
demo-train: install
	$(BIN)/musgen data build --corpus bach --out $(DEMO)/data/bach
	rm -rf $(DEMO)/runs/transformer-tiny $(DEMO)/runs/lstm-tiny
	$(BIN)/musgen train transformer --data $(DEMO)/data/bach --out $(DEMO)/runs/transformer-tiny \
		--config tiny/transformer $(DEMO_BUDGET)
	$(BIN)/musgen sample --checkpoint $(DEMO)/runs/transformer-tiny --out $(DEMO)/samples/transformer \
		--num-samples 3 --length 400 --seed 0
	$(BIN)/musgen sample --checkpoint $(DEMO)/runs/transformer-tiny --out $(DEMO)/samples/transformer-primed \
		--prime $$($(SOURCE) $(DEMO)/data/bach 0) \
		--num-samples 2 --length 300 --seed 0
	$(BIN)/musgen train lstm --data $(DEMO)/data/bach --out $(DEMO)/runs/lstm-tiny \
		--config tiny/lstm $(DEMO_BUDGET)
	$(BIN)/musgen sample --checkpoint $(DEMO)/runs/lstm-tiny --out $(DEMO)/samples/lstm --num-samples 3 --length 400 --seed 0
	$(BIN)/musgen data build --corpus folk --limit 400 --out $(DEMO)/data/folk
	rm -rf $(DEMO)/runs/musicvae-tiny
	$(BIN)/musgen train musicvae --data $(DEMO)/data/folk --out $(DEMO)/runs/musicvae-tiny \
		--config tiny/musicvae $(DEMO_BUDGET)
	$(BIN)/musgen interpolate $$($(SOURCE) $(DEMO)/data/folk 0) $$($(SOURCE) $(DEMO)/data/folk 1) \
		--checkpoint $(DEMO)/runs/musicvae-tiny --steps 8 --out $(DEMO)/samples/musicvae-interpolation
	$(BIN)/musgen sample --checkpoint $(DEMO)/runs/musicvae-tiny --out $(DEMO)/samples/musicvae-prior \
		--num-samples 4 --temperature 0.5 --seed 0
	rm -rf $(DEMO)/runs/musegan-tiny
	$(BIN)/musgen train musegan --data $(DEMO)/data/bach --out $(DEMO)/runs/musegan-tiny \
		--config tiny/musegan $(DEMO_BUDGET)
	$(BIN)/musgen sample --checkpoint $(DEMO)/runs/musegan-tiny --out $(DEMO)/samples/musegan \
		--num-samples 3 --bars 8 --seed 0
	$(BIN)/musgen sample --checkpoint $(DEMO)/runs/musegan-tiny --out $(DEMO)/samples/musegan-harmonised \
		--condition-track $$($(SOURCE) $(DEMO)/data/bach 0) --track soprano --num-samples 2 --seed 0
	$(BIN)/musgen data build --corpus bach --render --limit 60 --set max_seconds_per_piece=30 \
		--out $(DEMO)/data/bach-audio
	rm -rf $(DEMO)/runs/vqvae-tiny $(DEMO)/runs/prior-tiny
	$(BIN)/musgen train vqvae --data $(DEMO)/data/bach-audio --out $(DEMO)/runs/vqvae-tiny \
		--config tiny/vqvae $(DEMO_BUDGET)
	$(BIN)/musgen train prior --data $(DEMO)/data/bach-audio --out $(DEMO)/runs/prior-tiny \
		--config tiny/prior --set vqvae=$(DEMO)/runs/vqvae-tiny $(DEMO_BUDGET)
	$(BIN)/musgen render $$($(SOURCE) $(DEMO)/data/bach 0) --out $(DEMO)/samples/audio/prompt.wav \
		--sample-rate 16000 --max-seconds 4
	$(BIN)/musgen reconstruct $(DEMO)/samples/audio/prompt.wav --checkpoint $(DEMO)/runs/vqvae-tiny \
		--out $(DEMO)/samples/audio/reconstruction
	$(BIN)/musgen sample --checkpoint $(DEMO)/runs/prior-tiny --prime $(DEMO)/samples/audio/prompt.wav \
		--seconds 6 --num-samples 2 --seed 0 --out $(DEMO)/samples/audio/continuations
	@echo "MIDI and WAV samples written to $(DEMO)/samples/"

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff format --check musgen tests scripts
	$(BIN)/ruff check musgen tests scripts
	$(BIN)/mypy musgen

bench: install
	$(BIN)/python scripts/bench_data.py
	$(BIN)/python scripts/bench_transformer.py
	$(BIN)/python scripts/bench_musegan.py
	$(BIN)/python scripts/bench_audio.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache .mypy_cache
