"""Export a pose checkpoint to ONNX (dynamic batch) with its metadata, verified with ONNX Runtime.

Usage:
    python scripts/export.py CHECKPOINT --format onnx [--out model.onnx] [--flip-test] [--opset 18]
        [--image-hw 256 192] [--codec msra|dark] [--no-verify] [--atol 1e-4]

CHECKPOINT is anything ``scripts/predict.py`` reads: a Lightning ``.ckpt`` from ``scripts/train.py`` (network and
codec from its config), an MMPose 0.x/1.x ``.pth`` or a converted file (a released file name gives input size and
codec; otherwise pass ``--image-hw`` and ``--codec``).

The file has input ``input`` float32 (batch, 3, H, W) (RGB crops normalised with ImageNet mean/std) and output
``heatmaps`` (batch, 133, H/4, W/4); ``--flip-test`` folds the flip test into the graph (each crop is averaged with
its mirror inside). Its metadata (key ``wbpose``, json) holds input size, mean/std, codec, sigma, DARK kernel, flip
indices and whether the flip test is folded in, so ``scripts/predict.py model.onnx --source ...`` (or
``Predictor.from_onnx``) runs it with ONNX Runtime and no Lightning or Hydra. After export, ONNX Runtime and torch
run the same synthetic crops and the largest heatmap difference must stay within ``--atol``.

Needs the optional extra: ``pip install -e '.[onnx]'`` (``make test`` installs it).
"""

import sys

from wbpose.app.export import main  # noqa: F401  (the same as the ``wbpose-export`` command)

if __name__ == "__main__":
    sys.exit(main())
