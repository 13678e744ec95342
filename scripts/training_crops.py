"""The ``wbpose-training-crops`` command from a checkout: usage in :mod:`wbpose.app.training_crops`."""

from wbpose.app.training_crops import main

if __name__ == "__main__":
    raise SystemExit(main())
