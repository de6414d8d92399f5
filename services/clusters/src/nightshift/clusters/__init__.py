"""Nightshift's clusters service: galaxy clusters in Planck-like HEALPix maps by U-Net segmentation."""

from nightshift.clusters.config import ClustersConfig, get_config

__all__ = ["ClustersConfig", "get_config"]
