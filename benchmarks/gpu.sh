#!/usr/bin/env bash
# One command for the GPU check (benchmarks/gpu.py), under 8 minutes on one H100/H200; prints one table, last.
#
# 1. Python: $PY, else .venv/bin/python, else python3 (the GPU machines' interpreter, which has torch, torchvision,
#    Lightning, OpenCV). wbpose's own packages that image lacks (hydra-core, omegaconf, antlr4, msgspec, orjson) are
#    installed from benchmarks/wheels/wbpose into /tmp/wbpose_site when they do not import; MMPose and its packages
#    from benchmarks/wheels/mmpose into /tmp/mmpose_site (on the path of benchmarks/mmpose_step.py alone). The
#    machines have no package registry: `bash benchmarks/fetch_mmpose_wheels.sh` here, then carry
#    benchmarks/wheels with the device tool. Without the MMPose wheels the MMPose rows say so and the rest runs.
# 2. The full-size fixture (scripts/synthetic.py --full-size) into $WBPOSE_FULL_ROOT (default /tmp/wbpose_full).
# 3. benchmarks/gpu.py with MMPose and, on a machine with at least 4 cores, the CPU video rows (WBPOSE_GPU_VIDEO=0
#    skips them). Its sections run most important first, each in its own process under its own cap, within a budget
#    of what is left of WBPOSE_GPU_TOTAL (default 450 s for the whole script) minus 10 s (or WBPOSE_GPU_BUDGET
#    seconds): sections that no longer fit are skipped and say so; a last `timeout` ends gpu.py 20 s past its budget
#    whatever happens. The whole run stays under 8 minutes.
# With $OUT set (the lent GPU machines) the full log goes to $OUT/gpu.log and the table to $OUT/gpu.json
# (benchmarks/render.py renders it once copied to docs/benchmark_results/).
# Usage: bash benchmarks/gpu.sh [--smoke] [other gpu.py arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PY:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
WHEELS="${WBPOSE_WHEELS:-benchmarks/wheels}"
SMOKE=0
[[ " $* " == *" --smoke "* ]] && SMOKE=1
LOG_DIR="${OUT:-$(mktemp -d /tmp/wbpose_gpu.XXXXXX)}"
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/gpu.log"
echo "gpu.sh: python $PY, log $LOG" | tee "$LOG"
if command -v nvidia-smi >/dev/null; then nvidia-smi >>"$LOG" 2>&1 || true; fi

install_wheels() {  # install_wheels FOLDER TARGET: the folder's wheels, offline, without dependencies
    rm -rf "$2"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$2" "$1"/*.whl >>"$LOG" 2>&1
}

if ! "$PY" -c "import hydra, omegaconf, msgspec, orjson" 2>/dev/null; then
    if compgen -G "$WHEELS/wbpose/*.whl" >/dev/null; then
        install_wheels "$WHEELS/wbpose" /tmp/wbpose_site
        export PYTHONPATH="$PYTHONPATH:/tmp/wbpose_site"
        echo "gpu.sh: wbpose's packages from $WHEELS/wbpose -> /tmp/wbpose_site" | tee -a "$LOG"
    else
        echo "gpu.sh: $PY lacks hydra-core/omegaconf/msgspec/orjson and $WHEELS/wbpose has no wheels:" \
             "run bash benchmarks/fetch_mmpose_wheels.sh where pip works and carry $WHEELS" | tee -a "$LOG" >&2
        exit 1
    fi
fi
MMPOSE=()
if [[ -n "${WBPOSE_MMPOSE_SITE:-}" ]]; then
    MMPOSE=(--mmpose-site "$WBPOSE_MMPOSE_SITE")
elif compgen -G "$WHEELS/mmpose/*.whl" >/dev/null; then
    if install_wheels "$WHEELS/mmpose" /tmp/mmpose_site; then
        MMPOSE=(--mmpose-site /tmp/mmpose_site)
        echo "gpu.sh: MMPose from $WHEELS/mmpose -> /tmp/mmpose_site" | tee -a "$LOG"
    else
        echo "gpu.sh: installing $WHEELS/mmpose failed (see $LOG): the MMPose rows are skipped" | tee -a "$LOG"
    fi
fi

ROOT="${WBPOSE_FULL_ROOT:-/tmp/wbpose_full}"
if [[ $SMOKE == 0 && ! -f "$ROOT/person_detection_results/COCO_val2017_detections_AP_H_56_person.json" ]]; then
    start=$SECONDS
    timeout 150 "$PY" scripts/synthetic.py --full-size --out "$ROOT" 2>&1 | tee -a "$LOG"
    echo "gpu.sh: full-size fixture in $((SECONDS - start)) s" | tee -a "$LOG"
fi
EXTRA=()
LIMIT=()
if [[ $SMOKE == 0 ]]; then
    BUDGET="${WBPOSE_GPU_BUDGET:-$((${WBPOSE_GPU_TOTAL:-450} - SECONDS - 10))}"
    echo "gpu.sh: ${SECONDS} s so far; gpu.py's budget ${BUDGET} s" | tee -a "$LOG"
    EXTRA+=(--budget "$BUDGET")
    LIMIT=(timeout -k 5 $((BUDGET + 20)))
    [[ -n "${OUT:-}" ]] && EXTRA+=(--json "$OUT/gpu.json" --video-json "$OUT/video_gpu_machine.json")
    [[ "${WBPOSE_GPU_VIDEO:-1}" != 0 && "$(nproc)" -ge 4 ]] && EXTRA+=(--video)
fi
set -o pipefail
"${LIMIT[@]}" "$PY" benchmarks/gpu.py --root "$ROOT" "${MMPOSE[@]}" "${EXTRA[@]}" "$@" 2>&1 | tee -a "$LOG"
