"""The classical baseline: ring template matching on both bands.

A clear bubble is an 8 um PAH shell around a cavity that 24 um warm dust fills. Each preprocessed
window is correlated (FFT) with zero-sum ring templates of several radii, the mean over an annulus
(the shell) minus the mean over the disk inside it (the cavity): on the 8 um channel that is the
ring's contrast, on the 24 um channel with the sign reversed the cavity's filling. The response is
``(ring_8um + fill_weight * filling_24um) / (1 + fill_weight)`` (one correlation of the combined
channel ``8um - fill_weight * 24um``); its local maxima over position are the candidates, mapped to a
score in [0, 1) by ``1 - exp(-response / response_scale)``; the same window NMS (0.45), field merging
and scoring as the SSD follow. No learning: ``fill_weight`` and the score threshold are chosen on the
simulated validation fields (:func:`nightshift.bubbles.scoring.tune_baseline`), as the SSD's threshold is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from scipy.fft import irfft2, next_fast_len, rfft2
from torchvision.ops import nms

from nightshift.bubbles.infer import BOX_SCALE, WindowBoxes

__all__ = ["ring_template", "RingTemplateDetector", "FILL_WEIGHTS"]

FILL_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
"""The 24 um weights tried on the validation fields (0: the 8 um ring alone)."""


def ring_template(radius_px: float) -> np.ndarray:
    """A zero-sum template: +mean over the annulus [0.8 r, 1.2 r], -mean over the disk inside 0.6 r (square, odd side)."""
    half = int(np.ceil(1.25 * radius_px)) + 1
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    distance = np.hypot(xx, yy)
    rim = (distance >= 0.8 * radius_px) & (distance <= 1.2 * radius_px)
    cavity = distance < 0.6 * radius_px
    return rim / rim.sum() - cavity / cavity.sum()


class RingTemplateDetector:
    """A :data:`~nightshift.bubbles.infer.WindowDetector` by ring template matching on the 8 um and 24 um channels.

    The default ``fill_weight`` and ``score_threshold`` are those :func:`nightshift.bubbles.scoring.tune_baseline`
    chose on the shipped model's 8 simulated validation fields (data seed 1000007).

    Parameters
    ----------
    radii_px : sequence of float
        Template radii in window pixels (boxes of 2.6 x radius: the SSD priors' range).
    fill_weight : float
        Weight of the 24 um cavity filling against the 8 um ring contrast (0: 8 um only).
    response_scale : float
        Response (in normalised 8 um units) that maps to a score of 1 - 1/e.
    peaks_per_window : int
        Most candidates kept per window before NMS.
    nms_iou : float
        Window NMS IoU threshold.
    score_threshold : float
        Confidence from which a detection is reported (chosen with ``fill_weight``).
    """

    def __init__(self, radii_px: Sequence[float] = (12, 18, 27, 40, 60, 90), *, fill_weight: float = 0.5,
                 response_scale: float = 0.35, peaks_per_window: int = 20, nms_iou: float = 0.45,
                 score_threshold: float = 0.55) -> None:
        self.radii = [float(r) for r in radii_px]
        self.fill_weight = fill_weight
        self.score_threshold = score_threshold
        self.response_scale = response_scale
        self.peaks_per_window = peaks_per_window
        self.nms_iou = nms_iou
        self._spectra: dict[tuple[int, int], list[np.ndarray]] = {}

    def _template_spectra(self, shape: tuple[int, int]) -> list[np.ndarray]:
        """Templates' spectra on the zero-padded grid of a window of ``shape``, centred at the origin (cached)."""
        if shape not in self._spectra:
            grid = self._grid(shape)
            spectra = []
            for radius in self.radii:
                template = ring_template(radius)
                half = template.shape[0] // 2
                placed = np.zeros(grid)
                placed[:template.shape[0], :template.shape[1]] = template
                spectra.append(rfft2(np.roll(placed, (-half, -half), axis=(0, 1))))
            self._spectra[shape] = spectra
        return self._spectra[shape]

    def _window(self, bands: np.ndarray) -> WindowBoxes:
        candidates = []
        shape = bands.shape[1:]
        spectra = self._template_spectra(shape)
        combined = (bands[0] - self.fill_weight * bands[1]) / (1.0 + self.fill_weight)  # 24 um: a bright cavity counts
        # zero padding past the template's reach: the normalised minimum, so the edge is not a ring and nothing wraps
        window_spectrum = rfft2(combined, s=self._grid(shape))
        for radius, spectrum in zip(self.radii, spectra):
            # the templates are symmetric, so correlation is convolution: one FFT per window, one inverse per radius
            response = irfft2(window_spectrum * spectrum, s=self._grid(shape))[:shape[0], :shape[1]]
            peaks = (response == ndimage.maximum_filter(response, size=9)) & (response > 0)  # NMS merges the rest
            margin = int(0.5 * radius)  # a ring centred at the very edge is mostly outside the window
            peaks[:margin], peaks[-margin:], peaks[:, :margin], peaks[:, -margin:] = False, False, False, False
            ys, xs = np.nonzero(peaks)
            candidates += [(float(x) + 0.5, float(y) + 0.5, radius, float(response[y, x])) for x, y in zip(xs, ys)]
        if not candidates:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        candidates.sort(key=lambda c: -c[3])
        x, y, r, response = (np.array(v) for v in zip(*candidates[: 10 * self.peaks_per_window]))
        half = BOX_SCALE * r
        boxes = np.stack([x - half, y - half, x + half, y + half], axis=1).astype(np.float32)
        scores = (1.0 - np.exp(-response / self.response_scale)).astype(np.float32)
        keep = nms(torch.from_numpy(boxes), torch.from_numpy(scores), self.nms_iou).numpy()[: self.peaks_per_window]
        return boxes[keep], scores[keep]

    def _grid(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The FFT grid: the window and a zero border wider than the largest template, at sizes FFTs are fast at."""
        pad = int(np.ceil(1.25 * max(self.radii))) + 2
        return next_fast_len(shape[0] + 2 * pad, real=True), next_fast_len(shape[1] + 2 * pad, real=True)

    def __call__(self, windows: np.ndarray) -> list[WindowBoxes]:
        return [self._window(window) for window in windows]
