# quantsite: `make serve` installs the runtime dependencies and serves on SQLite; `make test` installs the
# development tools too and runs the tests. Each is one command on a fresh machine (Python 3.11+ and make).
#   make serve PORT=8001 HOST=0.0.0.0     another port / every interface (defaults: 8000, 127.0.0.1)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

# Two stamps: the runtime install (`pip install -e .`, what `make serve` needs) and the development install
# (`pip install -e '.[dev]'`: pytest, hypothesis, ruff, mypy, schemathesis ..., and the client package of client/
# with its CLI, whose tests run against a live server), which `make test` and `make lint` need. Either is redone when pyproject.toml changes.
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: install install-runtime serve test lint bench clean

install: $(DEV)

install-runtime: $(RUNTIME)

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): pyproject.toml | $(VENV)/pyvenv.cfg
	$(PIP) install -e .
	touch $@

# The development install includes the runtime one, so it stamps both.
$(DEV): pyproject.toml client/pyproject.toml | $(VENV)/pyvenv.cfg
	$(PIP) install -e '.[dev]' -e './client[all]'
	touch $@ $(RUNTIME)

# Development server: SQLite in ./db.sqlite3, the default instance created by the migrations, no auth.
serve: $(RUNTIME)
	DJANGO_DEBUG=1 $(BIN)/python manage.py migrate --noinput
	DJANGO_DEBUG=1 $(BIN)/gunicorn quantsite.wsgi --config gunicorn.conf.py --bind $(HOST):$(PORT)

test: $(DEV)
	$(BIN)/python -m pytest

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict engine
	$(BIN)/mypy --strict client
	DJANGO_DEBUG=1 $(BIN)/python manage.py check
	DJANGO_DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

bench: $(RUNTIME)
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* staticfiles .pytest_cache .mypy_cache .ruff_cache
