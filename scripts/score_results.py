"""Score a COCO-WholeBody keypoint results file against an annotation file with the six xtcocotools evaluations.

Usage:
    python scripts/score_results.py ANNOTATIONS.json RESULTS.json [--out metrics.json] [--num-procs N] [--verbose]
        [--engine fast|xtcocotools] [--cache-dir DIR]

The default engine ("fast") parses both files straight into arrays and runs xtcocotools' algorithm vectorised in
numpy (the same numbers, bit for bit; ``tests/metrics/test_cocoeval.py``); ``--engine xtcocotools`` runs the
reference itself. ``--cache-dir`` keeps the parsed annotation file for the next run (``wbpose.data.cache``).

RESULTS.json may be written by wbpose, MMPose 1.x (``*.keypoints.json``) or MMPose 0.x (``result_keypoints.json``,
whose extra ``center``/``scale`` fields are ignored); a missing ``category_id`` is taken as 1 (person). The
seed-table row (Body/Foot/Face/Hand/Whole AP and AR, Hand = mean of left and right) is printed; ``--out`` writes
all 70 numbers as json with keys without prefix: ``{part}_{stat}`` for part in body, foot, face, lefthand,
righthand, hand, wholebody and stat in ap, ap50, ap75, apm, apl, ar, ar50, ar75, arm, arl. -1 means undefined
(no ground truth for that part or area range), as xtcocotools reports it. Bad input exits with status 1.
"""

import sys

from wbpose.app.score import main

if __name__ == "__main__":
    sys.exit(main())
