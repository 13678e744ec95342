# Makes conf/ the package data `wbpose.conf` of an installed wbpose (see [tool.setuptools] in pyproject.toml):
# the console commands (wbpose-train, wbpose-eval, ...) compose these files from any directory.
