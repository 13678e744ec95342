"""The ``wbpose-synthetic`` command from a checkout: usage in :mod:`wbpose.app.synthetic`."""

from wbpose.app.synthetic import main

if __name__ == "__main__":
    raise SystemExit(main())
