"""The ``wbpose-demo`` command from a checkout: usage in :mod:`wbpose.app.demo`."""

from wbpose.app.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
