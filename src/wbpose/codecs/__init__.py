"""Heatmap codecs: keypoints <-> Gaussian heatmaps (standard MSRA and DARK), and flip-test helpers."""

from wbpose.codecs.base import BaseHeatmapCodec, HeatmapCodec, HeatmapTarget
from wbpose.codecs.dark import DarkHeatmap, opencv_gaussian_kernel
from wbpose.codecs.factory import CODECS, default_sigma, make_codec
from wbpose.codecs.flip import flip_heatmaps, flip_test_average
from wbpose.codecs.msra import MSRAHeatmap

__all__ = [
    "CODECS",
    "BaseHeatmapCodec",
    "DarkHeatmap",
    "HeatmapCodec",
    "HeatmapTarget",
    "MSRAHeatmap",
    "default_sigma",
    "flip_heatmaps",
    "flip_test_average",
    "make_codec",
    "opencv_gaussian_kernel",
]
