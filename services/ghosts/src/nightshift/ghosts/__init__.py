"""Nightshift's ghosts service: ghosting and scattered-light artefacts in DES focal-plane images.

Mask R-CNN instance segmentation (torchvision) of three artefact classes (bright, faint, rays), after
DeepGhostBusters (Tanoglidis et al. 2021, arXiv:2109.08246).
"""

from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.baseline import ResidualBaseline
from nightshift.ghosts.config import BANDS, CLASSES, TILE_SIZE, GhostsConfig, preset
from nightshift.ghosts.infer import Detector
from nightshift.ghosts.model import GhostDetector, build_model, load_detector
from nightshift.ghosts.simulate import SkyModel, simulate_dataset, simulate_exposure

__all__ = [
    "Artefact", "BANDS", "CLASSES", "TILE_SIZE", "Detector", "GhostDetector", "GhostsConfig", "ResidualBaseline",
    "SkyModel", "build_model", "load_detector", "preset", "simulate_dataset", "simulate_exposure",
]
