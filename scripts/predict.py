"""The ``wbpose-predict`` command from a checkout: usage in :mod:`wbpose.app.predict`."""

from wbpose.app.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
