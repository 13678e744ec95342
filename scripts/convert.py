"""The ``wbpose-convert`` command from a checkout: usage in :mod:`wbpose.app.convert`."""

from wbpose.app.convert import main

if __name__ == "__main__":
    raise SystemExit(main())
