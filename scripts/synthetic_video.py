"""The ``wbpose-synthetic-video`` command from a checkout: usage in :mod:`wbpose.app.synthetic_video`."""

from wbpose.app.synthetic_video import main

if __name__ == "__main__":
    raise SystemExit(main())
