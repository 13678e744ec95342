"""Score a COCO-WholeBody keypoint results file against an annotation file with the six xtcocotools evaluations.

Usage:
    wbpose-score ANNOTATIONS.json RESULTS.json [--out metrics.json] [--num-procs N] [--verbose]
        [--engine fast|xtcocotools] [--cache-dir DIR]        (or python scripts/score.py ...)

The default engine ("fast") parses both files straight into arrays and runs xtcocotools' algorithm vectorised in
numpy in this process (the same numbers, bit for bit; ``tests/metrics/test_cocoeval.py``); ``--engine
xtcocotools`` runs the reference itself (``--num-procs``: its worker processes). ``--cache-dir`` keeps the parsed
annotation file for the next run (``wbpose.data.cache``).

RESULTS.json may be written by wbpose, MMPose 1.x (``*.keypoints.json``) or MMPose 0.x (``result_keypoints.json``,
whose extra ``center``/``scale`` fields are ignored); a missing ``category_id`` is taken as 1 (person). The
seed-table row (Body/Foot/Face/Hand/Whole AP and AR, Hand = mean of left and right) is printed; ``--out`` writes
all 70 numbers as json with keys without prefix: ``{part}_{stat}`` for part in body, foot, face, lefthand,
righthand, hand, wholebody and stat in ap, ap50, ap75, apm, apl, ar, ar50, ar75, arm, arl. -1 means undefined
(no ground truth for that part or area range), as xtcocotools reports it. Bad input exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wbpose.metrics.evaluation import ENGINES, evaluate_results_file
from wbpose.metrics.tables import format_table


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, score, print the table row and optionally write the json; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotations", type=Path, help="COCO-WholeBody annotation json")
    parser.add_argument("results", type=Path, help="keypoint results json")
    parser.add_argument("--out", type=Path, default=None, help="write all numbers to this json file")
    parser.add_argument("--num-procs", type=int, default=None, help="xtcocotools engine: worker processes")
    parser.add_argument("--verbose", action="store_true", help="print xtcocotools' tables")
    parser.add_argument("--engine", choices=ENGINES, default="fast", help="evaluation engine (same numbers)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="parsed-annotation cache folder")
    args = parser.parse_args(argv)
    try:
        metrics = evaluate_results_file(
            args.annotations,
            args.results,
            num_procs=args.num_procs,
            verbose=args.verbose,
            engine=args.engine,
            cache_dir=args.cache_dir,
        )
    except (ValueError, FileNotFoundError, json.JSONDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_table(metrics))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(metrics, indent=2) + "\n")
    return 0
