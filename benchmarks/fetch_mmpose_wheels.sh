#!/usr/bin/env bash
# Download, as wheels, what benchmarks/gpu.sh installs on a GPU machine that has no package registry:
#   benchmarks/wheels/mmpose/  MMPose 1.3.2 (--no-deps) and the pure-python packages its training step and pipeline
#                              import that the machines' image lacks (benchmarks/mmpose_step.py; gpu.sh installs them
#                              into /tmp/mmpose_site, on PYTHONPATH for that script alone);
#   benchmarks/wheels/wbpose/  wbpose's own runtime packages the image lacks (hydra-core, omegaconf, antlr4,
#                              msgspec, orjson; CPython 3.12, x86-64 for the compiled ones).
# The folder is git-ignored; carry it with the device tool (`carry: ["benchmarks/wheels"]`, about 4.5 MB).
# Versions are pinned: one version of each, so that an offline `pip install --no-deps` gets exactly these.
# Usage: bash benchmarks/fetch_mmpose_wheels.sh [OUT_DIR]   (needs a package registry: run it here, not there)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/wheels}"
if [[ -n "${PIP:-}" ]]; then read -r -a PIP_CMD <<<"$PIP"
elif [[ -x .venv/bin/python ]]; then PIP_CMD=(.venv/bin/python -m pip)
else PIP_CMD=(python3 -m pip); fi
# The GPU machines: CPython 3.12 on x86-64 Linux (device README); pure-python wheels match any platform.
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
MMPOSE=(mmpose==1.3.2 mmengine==0.10.7 mmcv-lite==2.1.0 json_tricks==3.17.3 munkres==1.1.4 addict==2.4.0
        yapf==0.43.0 platformdirs==4.14.9 termcolor==3.3.0 six==1.17.0)
WBPOSE=(hydra-core==1.3.8 omegaconf==2.3.1 msgspec==0.23.0 orjson==3.13.0)
mkdir -p "$OUT/mmpose" "$OUT/wbpose"
"${PIP_CMD[@]}" download -q --no-deps "${TARGET[@]}" -d "$OUT/mmpose" "${MMPOSE[@]}"
"${PIP_CMD[@]}" download -q --no-deps "${TARGET[@]}" -d "$OUT/wbpose" "${WBPOSE[@]}"
# antlr4-python3-runtime 4.9.3 (what omegaconf 2.3 pins) is published as a source archive only: build its wheel here
"${PIP_CMD[@]}" wheel -q --no-deps -w "$OUT/wbpose" antlr4-python3-runtime==4.9.3
ls -l "$OUT"/mmpose "$OUT"/wbpose
du -sh "$OUT"
