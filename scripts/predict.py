"""Predict whole-body poses on images, videos or a webcam, draw them and write COCO-WholeBody results.

Usage:
    python scripts/predict.py MODEL --source SOURCE [--boxes det.json | --detector det.onnx] [--track]
        [--out DIR] [--out-video PATH] [--fourcc XXXX] [--max-frames N] [--score-thr 0.3] [--box-thr 0.3]
        [--no-flip] [--device cpu] [--image-hw 256 192] [--codec msra|dark] [--batch-size 32] [--threads N]
    python scripts/predict.py MODEL IMAGES [...]          # the older form: IMAGES is an image file or a folder

MODEL is a Lightning ``.ckpt`` from ``scripts/train.py``, an MMPose 0.x/1.x ``.pth`` (loaded ``weights_only``; a
released file name gives its input size and codec, else pass ``--image-hw`` and ``--codec``), or an ``.onnx`` file
from ``scripts/export.py`` (run with ONNX Runtime; its metadata gives input size, codec and flip test).

SOURCE is an image, a folder of images (jpg, jpeg, png, bmp, webp; not recursive), a quoted glob
(``'shots/*.jpg'``), a video file (mp4, avi, mov, mkv, webm, ...), or a webcam index (``0``).

Person boxes (one of):

- ``--boxes det.json``: a COCO detection results json (``[{"image_id", "category_id", "bbox": [x, y, w, h],
  "score"}]``, optionally with ``file_name``): person boxes (category 1) with ``score >= --box-thr``. Images are
  matched by ``file_name`` when the entries have one, else by the image id of a COCO file name
  (``000000000785.jpg`` -> 785); a video's frames by ``image_id`` = frame index (0-based). An image without
  matching boxes gets no poses.
- ``--detector det.onnx``: an RTMDet/YOLOX person detector exported by MMDeploy (end2end, NMS inside), run with
  ONNX Runtime (contract: ``wbpose/inference/detector.py``); ``--det-family rtmdet|yolox`` when the file name
  does not say, ``--det-score-thr``, ``--det-nms-thr``.
- neither: the whole image is one person (single-person crops).

``--track`` (videos, webcams): pose tracking: the box source every ``--det-every`` frames (default 5), in between
each person's box from its last keypoints, ``--track-match iou|oks``; each result gets a ``track_id``.

Writes into ``--out``: for images ``<image stem>.png`` (the image with the 133-point skeletons, keypoints with score
above ``--score-thr``); for a video or webcam ``<input stem>.mp4`` (or ``--out-video``; ``.avi`` gives Motion-JPEG)
at the input's fps and size; and ``results.json`` with every prediction in the official COCO-WholeBody results
format. The image id of a result is the frame index for a video, else the number of a COCO-style file name, else
the ``image_id`` of its detections, else the image's position in the sorted listing.

The script sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment has a value: torch's idle OpenMP workers then
sleep instead of spinning, so the frame reader and writer threads (and other jobs) get the cores.
"""

import sys

from wbpose.app.predict import coco_image_id, main  # noqa: F401  (the same as the ``wbpose-predict`` command)

if __name__ == "__main__":
    sys.exit(main())
