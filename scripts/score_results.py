"""Score a COCO-WholeBody keypoint results file against an annotation file with the six xtcocotools evaluations.

Thin wrapper: usage, options and behaviour are documented in :mod:`wbpose.app.score` (``wbpose-score``).
"""

import sys

from wbpose.app.score import main

if __name__ == "__main__":
    sys.exit(main())
