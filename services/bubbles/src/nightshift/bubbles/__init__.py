"""Nightshift's bubbles service: infrared bubbles in Spitzer 8 um + 24 um images.

SSD300 (torchvision) on two channels with the paper's priors, after Nishimura et al. 2025
(PASJ psaf008, "Infrared bubble recognition in the Milky Way and beyond using deep learning").
"""

from nightshift.bubbles.config import BANDS, IMAGE_SIZE, BubblesConfig, preset
from nightshift.bubbles.simulate import BubbleTruth, Field, simulate_field, simulate_fields

__all__ = ["BANDS", "IMAGE_SIZE", "BubbleTruth", "BubblesConfig", "Field", "preset", "simulate_field", "simulate_fields"]
