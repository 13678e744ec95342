"""The ``wbpose-eval`` command from a checkout: usage in :mod:`wbpose.app.evaluate`."""

from wbpose.app.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
