# mirmatch: `make demo` runs the pipeline on the bundled demo corpus, `make test` runs the tests.
# Both install what they need first (Debian packages when run as root, then a virtualenv in .venv).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := libfluidsynth3 libsndfile1 fluid-soundfont-gm musescore-general-soundfont-small \
	simutrans-data openttd-openmsx mma freedink-data asc-music chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-deps demo test lint bench clean

setup: system-deps $(VENV)/.installed

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,gcp,train]'
	touch $@

demo: setup
	$(VENV)/bin/mirmatch demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	@for f in tests/bench/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .cache demo-out .pytest_cache .ruff_cache *.egg-info
