VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean data

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests use, when missing and we are allowed to install them:
# Fashion-MNIST (real-data tests) and headless Chromium (renders the HTML report).
DEBS := $(if $(wildcard /usr/share/datasets/fashion-mnist),,dataset-fashion-mnist) \
        $(if $(wildcard /usr/bin/chromium),,chromium)
data:
	@if [ -n "$(strip $(DEBS))" ] && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBS); \
	fi

demo: $(STAMP)
	$(VENV)/bin/lifelong demo --out runs/demo

test: $(STAMP) data
	$(VENV)/bin/python -m pytest -n 2 -q

bench: $(STAMP) data
	$(PY) benchmarks/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs
