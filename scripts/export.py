"""Export a pose checkpoint to ONNX (dynamic batch) with its metadata, verified with ONNX Runtime.

Thin wrapper: usage, options and behaviour are documented in :mod:`wbpose.app.export` (``wbpose-export``).
"""

import sys

from wbpose.app.export import main  # noqa: F401  (the same as the ``wbpose-export`` command)

if __name__ == "__main__":
    sys.exit(main())
