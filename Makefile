# Two commands for a newcomer: `make run` (the app on the shipped default model) and `make test`.
# Both create .venv on first use and (re)install only when the requirement files change.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN_STAMP  := $(VENV)/.run-installed
TEST_STAMP := $(VENV)/.test-installed
PORT ?= 8501

.PHONY: run test lint install clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

$(TEST_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $(RUN_STAMP) $@

install: $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/streamlit run streamlit_app.py --server.headless true \
		--server.port $(PORT) --browser.gatherUsageStats false

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

clean-venv:
	rm -rf $(VENV)
