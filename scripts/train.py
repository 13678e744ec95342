"""The ``wbpose-train`` command from a checkout: usage in :mod:`wbpose.app.train`."""

from wbpose.app.train import main

if __name__ == "__main__":
    raise SystemExit(main())
