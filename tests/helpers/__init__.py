"""Shared test helpers, importable from the tests and from ``benchmarks/`` as ``helpers``.

pytest puts ``tests/`` on ``sys.path`` (``pythonpath`` in ``pyproject.toml``); a benchmark inserts it itself.

- ``annotations``: the one builder of COCO-WholeBody annotation files (people with every field of the real v1.0
  files, images, JPEGs, detection files, dataset roots in the real layout, random ground truth for the metric).
- ``predictions``: metric inputs made from ground truth (perfect and detector-like).
- ``references``: plain, slow, obviously correct implementations that the vectorised code is checked against,
  and the MMPose-structured baselines the benchmarks time (themselves checked against the plain ones).
- ``paths``: the repository root and the fixture files.
- ``dashboards``: what the experiment loggers wrote, read back with their own readers (wandb offline records,
  TensorBoard HParams and scalars).
- ``callbacks``: Lightning callbacks that runs load by Hydra target (``helpers.callbacks.KillAtStep``).
"""
