"""Models: HRNet backbone, heatmap head and the top-down pose model that joins them."""

from wbpose.models.heatmap_head import HeatmapHead
from wbpose.models.hrnet import ARCHS, HRNet, HRNetArch
from wbpose.models.topdown import TopdownPoseModel, build_pose_model

__all__ = ["ARCHS", "HRNet", "HRNetArch", "HeatmapHead", "TopdownPoseModel", "build_pose_model"]
