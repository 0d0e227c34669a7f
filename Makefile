# The two commands a new user runs on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo

.PHONY: install demo test test-slow lint bench clean

# torch is pinned to the CPU wheel that ships with this machine image; a GPU user installs the
# torch build of their choice first and the rest installs on top of it.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Build the built-in Bach data set, train the tiny LSTM for a minute, sample from it.
demo: install
	$(BIN)/musgen data build --corpus bach --out $(DEMO)/data/bach
	rm -rf $(DEMO)/runs/lstm-tiny
	$(BIN)/musgen train lstm --data $(DEMO)/data/bach --out $(DEMO)/runs/lstm-tiny \
		--config configs/tiny/lstm.yaml --set train.steps=100000 --set train.max_minutes=1 --set train.eval_every=500 --set train.save_every=100000
	$(BIN)/musgen sample --checkpoint $(DEMO)/runs/lstm-tiny --out $(DEMO)/samples --num-samples 3 --length 400 --seed 0
	@echo "MIDI samples written to $(DEMO)/samples/"

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check musgen tests scripts

bench: install
	$(BIN)/python scripts/bench_data.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
