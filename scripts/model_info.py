"""The ``wbpose-model-info`` command from a checkout: usage in :mod:`wbpose.app.model_info`."""

from wbpose.app.model_info import main

if __name__ == "__main__":
    raise SystemExit(main())
