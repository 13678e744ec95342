"""The ``wbpose-summarize`` command from a checkout: usage in :mod:`wbpose.app.sweep`."""

from wbpose.app.sweep import main

if __name__ == "__main__":
    raise SystemExit(main())
