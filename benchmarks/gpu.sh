#!/usr/bin/env bash
# One command for the GPU check (benchmarks/gpu.py): makes the full-size fixture if absent, then runs the grid.
# On a machine with at least 4 CPU cores (the GPU machines) it then times the CPU video path of the tiny model and
# W32 (benchmarks/video.py, 2 network threads; the reader and writer threads get cores of their own there, which
# this project's 2-core machine cannot give them). WBPOSE_GPU_VIDEO=0 skips that part.
# With $OUT set (the lent GPU machines), the tables are also written as json there (benchmarks/render.py renders
# them into docs/benchmarks.md once copied to docs/benchmark_results/).
# Usage: bash benchmarks/gpu.sh [--smoke] [other gpu.py arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
ROOT="${WBPOSE_FULL_ROOT:-/tmp/wbpose_full}"
if [[ " $* " != *" --smoke "* && ! -f "$ROOT/person_detection_results/COCO_val2017_detections_AP_H_56_person.json" ]]; then
    "$PY" scripts/synthetic.py --full-size --out "$ROOT"
fi
JSON=()
VIDEO_JSON=()
if [[ -n "${OUT:-}" && " $* " != *" --smoke "* ]]; then
    JSON=(--json "$OUT/gpu.json")
    VIDEO_JSON=(--json "$OUT/video_gpu_machine.json")
fi
"$PY" benchmarks/gpu.py --root "$ROOT" "$@" "${JSON[@]}"
if [[ " $* " != *" --smoke "* && "${WBPOSE_GPU_VIDEO:-1}" != 0 && "$(nproc)" -ge 4 ]]; then
    "$PY" benchmarks/video.py --archs tiny w32 --frames 40 8 --reps 3 --threads 2 "${VIDEO_JSON[@]}"
fi
