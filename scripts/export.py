"""The ``wbpose-export`` command from a checkout: usage in :mod:`wbpose.app.export`."""

from wbpose.app.export import main

if __name__ == "__main__":
    raise SystemExit(main())
