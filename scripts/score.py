"""The ``wbpose-score`` command from a checkout: usage in :mod:`wbpose.app.score`."""

from wbpose.app.score import main

if __name__ == "__main__":
    raise SystemExit(main())
