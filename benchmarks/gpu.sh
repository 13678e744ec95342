#!/usr/bin/env bash
# One command for the GPU check (benchmarks/gpu.py): makes the full-size fixture if absent, then runs the grid.
# Usage: bash benchmarks/gpu.sh [--smoke] [other gpu.py arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
ROOT="${WBPOSE_FULL_ROOT:-/tmp/wbpose_full}"
if [[ " $* " != *" --smoke "* && ! -f "$ROOT/person_detection_results/COCO_val2017_detections_AP_H_56_person.json" ]]; then
    "$PY" scripts/make_synthetic.py --full-size --out "$ROOT"
fi
exec "$PY" benchmarks/gpu.py --root "$ROOT" "$@"
