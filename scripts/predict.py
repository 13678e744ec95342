"""Predict whole-body poses on images, videos or a webcam, draw them and write COCO-WholeBody results.

Thin wrapper: usage, options and behaviour are documented in :mod:`wbpose.app.predict` (``wbpose-predict``).
"""

import sys

from wbpose.app.predict import coco_image_id, main  # noqa: F401  (the same as the ``wbpose-predict`` command)

if __name__ == "__main__":
    sys.exit(main())
