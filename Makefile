# The two set-up commands of the README.
#   make app   install everything into .venv and start the Streamlit app
#   make test  install everything into .venv and run the whole test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: app test install browser

# A fresh .venv takes about 6.5 GB (torch, transformers, streamlit, playwright): say so before pip
# fails half-way with "No space left on device".
NEED_KB := 8000000

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || { avail=$$(df -Pk . | awk 'NR==2 {print $$4}'); [ "$$avail" -ge $(NEED_KB) ] || { \
	  echo "make: installing .venv needs about $$(( $(NEED_KB) / 1000000 )) GB free disk here; only $$(( avail / 1000000 )) GB is free (df -h .)." >&2; exit 1; }; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

app: $(STAMP)
	$(BIN)/streamlit run app/main.py --server.fileWatcherType none

# Debian's chromium, for the app's end-to-end test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q tests
