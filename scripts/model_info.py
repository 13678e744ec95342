"""Parameters and FLOPs per arch and input size: ``python scripts/model_info.py [--archs ...] [--sizes ...]``.

Same as the ``wbpose-model-info`` command (:mod:`wbpose.app.model_info`).
"""

from wbpose.app.model_info import main

if __name__ == "__main__":
    main()
