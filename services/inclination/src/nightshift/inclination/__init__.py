"""Nightshift inclination service: spiral-galaxy inclinations (45..90 deg) and reject probabilities.

A re-implementation of IncliNET (Kourkchi et al.): VGG-like Keras CNNs trained on simulated g, r, i
galaxy cut-outs, served over the Nightshift gRPC contract as ``Measurement`` results. The modules
importing TensorFlow (model, train, infer, servicer) are imported on use, not here.
"""

from nightshift.inclination.baseline import baseline_estimates, hubble_inclination
from nightshift.inclination.config import PRESETS, InclinationConfig, build_config
from nightshift.inclination.evaluate import roc_auc, score
from nightshift.inclination.preprocess import augment, stretch, test_time_copies, view
from nightshift.inclination.simulate import GalaxyParameters, SimulatedGalaxies, render_galaxy, simulate_galaxies

__all__ = [
    "InclinationConfig", "PRESETS", "build_config",
    "GalaxyParameters", "SimulatedGalaxies", "render_galaxy", "simulate_galaxies",
    "stretch", "view", "test_time_copies", "augment",
    "baseline_estimates", "hubble_inclination",
    "roc_auc", "score",
]
