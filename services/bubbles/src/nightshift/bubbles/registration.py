"""Registration of the real composites: pixel scale and centre fitted so that MWP DR1 rings land on the image's rings.

The composites carry no WCS and only one file name gives its extent, so each field's scale and
centre are fitted to the data. For a trial (scale, centre offset) every catalogue bubble that falls
in the field is drawn as a circle of its effective radius ``sqrt(semi_major * semi_minor)``, and the
smoothed 8 um image is sampled on polar rays around it: the bubble's ring contrast is the median on
its rim (``RIM`` in units of the radius) minus the median of the zones inside and outside it
(``INSIDE``, ``OUTSIDE``), in units of the image's robust noise. Medians make single stars
irrelevant; the two reference zones cancel a linear background gradient. A trial's score is
``sum(contrast) / sqrt(n)``: on a wrong registration the rings fall on random sky and the score is
noise, so it rewards both more bubbles on rings and brighter rims. The fit is a grid over log scale
and offset, then a Nelder-Mead refinement from the best grid point.

The first field's file name gives its extent (0.96"/px); its fitted scale checks the method.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import ndimage, optimize

from nightshift.bubbles.realdata import CATALOGUE_FILE, REGISTRATION_DIR, MwpCatalogue, load_catalogue, parse_field_name
from nightshift.bubbles.windows import car_header

__all__ = ["RIM", "INSIDE", "OUTSIDE", "Registration", "ring_contrasts", "ring_score", "field_ring_score", "register_field",
           "radial_profile", "register_composites"]

RIM = (0.8, 1.25)
"""The rim's radial range in units of the bubble's effective radius (the stacked profile of the field of known scale peaks there)."""
INSIDE = (0.0, 0.45)
OUTSIDE = (1.7, 2.2)
_ANGLES = 48
_MIN_RADIUS_PX = 4.0
_SMOOTHING_PX = 1.5


@dataclasses.dataclass(frozen=True)
class Registration:
    """A field's fitted registration: centre (l, b) in degrees, scale in arcsec per pixel, score, bubbles used."""

    glon: float
    glat: float
    scale_arcsec: float
    score: float
    bubbles: int

    def header(self, shape: tuple[int, int]) -> fits.Header:
        """The field's Galactic CAR header at this registration, the fit's figures as cards."""
        header = car_header(self.glon, self.glat, shape, self.scale_arcsec)
        header["RINGSCOR"] = (round(self.score, 3), "ring score of the fit: sum(contrast)/sqrt(n)")
        header["RINGNBUB"] = (self.bubbles, "MWP DR1 bubbles the fit scored")
        header["COMMENT"] = "Scale and centre fitted by nightshift-bubbles register-real: MWP DR1 rings on 8 um rings."
        return header


def _to_pixels(catalogue: MwpCatalogue, shape: tuple[int, int], glon: float, glat: float,
               scale_arcsec: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Catalogue centres (x, y, 0-based) and radii in pixels of a CAR field centred on (l, b); longitude increases to the left."""
    step = scale_arcsec / 3600.0
    height, width = shape
    dlon = (catalogue.glon - glon + 180.0) % 360.0 - 180.0
    x = (width - 1) / 2.0 - dlon / step
    y = (height - 1) / 2.0 + (catalogue.glat - glat) / step
    return x, y, catalogue.radius / step


def _prepared(band: np.ndarray) -> np.ndarray:
    """The band smoothed and scaled to unit robust noise (MAD of the high-pass residual)."""
    smooth = ndimage.gaussian_filter(np.nan_to_num(band.astype(np.float64)), _SMOOTHING_PX)
    residual = smooth - ndimage.median_filter(smooth, size=9)
    noise = 1.4826 * np.median(np.abs(residual - np.median(residual)))
    return smooth / max(noise, 1e-6)


def _zone_samples(image: np.ndarray, x: float, y: float, radius: float, zone: tuple[float, float]) -> np.ndarray:
    """Bilinear samples of ``image`` on a polar grid in ``zone`` (radius units) around (x, y); those inside the image."""
    radii = np.linspace(zone[0], zone[1], max(3, int(np.ceil((zone[1] - zone[0]) * radius / 1.5)) + 1)) * radius
    angles = np.linspace(0.0, 2.0 * np.pi, _ANGLES, endpoint=False)
    sx = (x + radii[:, None] * np.cos(angles)).ravel()
    sy = (y + radii[:, None] * np.sin(angles)).ravel()
    inside = (sx >= 0) & (sx <= image.shape[1] - 1) & (sy >= 0) & (sy <= image.shape[0] - 1)
    return ndimage.map_coordinates(image, [sy[inside], sx[inside]], order=1)


def _mean_square(zone: tuple[float, float]) -> float:
    """The mean of r^2 over an annulus ``zone`` (radius units)."""
    return (zone[0] ** 2 + zone[1] ** 2) / 2.0


def ring_contrasts(image: np.ndarray, x: np.ndarray, y: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Ring contrast of each circle on a prepared image; NaN where the circle is too small or mostly outside."""
    contrasts = np.full(len(x), np.nan)
    height, width = image.shape
    for i in np.nonzero((radius >= _MIN_RADIUS_PX) & (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1))[0]:
        rim, inner, outer = (_zone_samples(image, x[i], y[i], radius[i], zone) for zone in (RIM, INSIDE, OUTSIDE))
        if min(rim.size, inner.size, outer.size) >= _ANGLES:
            # background at the rim interpolated in r^2 between the zones: exact for a linear or quadratic sky
            at_rim = np.interp(_mean_square(RIM), [_mean_square(INSIDE), _mean_square(OUTSIDE)], [np.median(inner), np.median(outer)])
            contrasts[i] = np.median(rim) - at_rim
    return contrasts


def ring_score(image: np.ndarray, catalogue: MwpCatalogue, glon: float, glat: float, scale_arcsec: float) -> tuple[float, int]:
    """(score, bubbles scored) of a trial registration on a prepared image: ``sum(contrast) / sqrt(n)``."""
    contrasts = ring_contrasts(image, *_to_pixels(catalogue, image.shape, glon, glat, scale_arcsec))
    scored = contrasts[np.isfinite(contrasts)]
    return (float(scored.sum() / np.sqrt(scored.size)) if scored.size else 0.0), int(scored.size)


def radial_profile(band: np.ndarray, catalogue: MwpCatalogue, registration: Registration,
                   radii: Sequence[float] = tuple(np.arange(0.0, 2.45, 0.1))) -> np.ndarray:
    """Median over the field's bubbles of the prepared 8 um image on circles of each radius (radius units)."""
    image = _prepared(band)
    x, y, radius = _to_pixels(catalogue, image.shape, registration.glon, registration.glat, registration.scale_arcsec)
    keep = (radius >= _MIN_RADIUS_PX) & (x >= 0) & (x <= image.shape[1] - 1) & (y >= 0) & (y <= image.shape[0] - 1)
    rows = []
    for i in np.nonzero(keep)[0]:
        local = [_zone_samples(image, x[i], y[i], radius[i], (r, r)) for r in radii]
        values = np.array([np.median(v) if v.size else np.nan for v in local])
        rows.append(values - np.nanmedian(values))
    return np.nanmedian(np.array(rows), axis=0) if rows else np.full(len(radii), np.nan)


def register_field(band_8um: np.ndarray, catalogue: MwpCatalogue, glon: float, glat: float, *,
                   scales_arcsec: tuple[float, float] = (0.5, 8.0), scale_steps: int = 61,
                   max_offset_deg: float = 0.012, offset_steps: int = 9) -> Registration:
    """Fit a field's scale and centre: the grid's best (scale, offset) refined by Nelder-Mead.

    Parameters
    ----------
    band_8um : numpy.ndarray
        The field's 8 um image (H, W), row 0 the lowest latitude.
    catalogue : MwpCatalogue
        The catalogue bubbles near the field (all of them may be passed: those outside a trial are ignored).
    glon, glat : float
        The nominal centre (from the file name), degrees.
    scales_arcsec : tuple of float
        The range of pixel scales searched.
    max_offset_deg : float
        The largest centre offset searched in each coordinate (the file names round the centre to 0.01 deg).
    """
    image = _prepared(band_8um)
    offsets = np.linspace(-max_offset_deg, max_offset_deg, offset_steps)
    best = (-np.inf, 0.0, 0.0, 0.0)
    for scale in np.geomspace(*scales_arcsec, scale_steps):
        for dlon in offsets:
            for dlat in offsets:
                score, _ = ring_score(image, catalogue, glon + dlon, glat + dlat, scale)
                if score > best[0]:
                    best = (score, scale, dlon, dlat)
    _, scale, dlon, dlat = best

    def loss(parameters: np.ndarray) -> float:
        return -ring_score(image, catalogue, glon + parameters[1], glat + parameters[2], float(np.exp(parameters[0])))[0]

    refined = optimize.minimize(loss, np.array([np.log(scale), dlon, dlat]), method="Nelder-Mead",
                                options={"xatol": 1e-4, "fatol": 1e-3})
    log_scale, dlon, dlat = refined.x
    score, bubbles = ring_score(image, catalogue, glon + dlon, glat + dlat, float(np.exp(log_scale)))
    return Registration(float(glon + dlon), float(glat + dlat), float(np.exp(log_scale)), score, bubbles)


def field_ring_score(band_8um: np.ndarray, catalogue: MwpCatalogue, header: fits.Header) -> tuple[float, int]:
    """(score, bubbles scored) of a field's CAR header (as :func:`ring_score`)."""
    from astropy.wcs import WCS

    height, width = band_8um.shape
    glon, glat = WCS(header).pixel_to_world_values((width - 1) / 2.0, (height - 1) / 2.0)
    return ring_score(_prepared(band_8um), catalogue, float(glon), float(glat), abs(header["CDELT2"]) * 3600.0)


def register_composites(real_dir: Path, output: Path = REGISTRATION_DIR) -> list[dict[str, float | str]]:
    """Fit every ``GLM_*.jpg`` composite in ``real_dir`` against its MWP DR1 catalogue; write ``<stem>.hdr`` into ``output``."""
    from PIL import Image

    catalogue = load_catalogue(real_dir / CATALOGUE_FILE)
    output.mkdir(parents=True, exist_ok=True)
    results = []
    for path in sorted(real_dir.glob("GLM_*.jpg")):
        band_8um = np.asarray(Image.open(path).convert("RGB"))[::-1, :, 1].astype(np.float32)
        glon, glat, width_deg = parse_field_name(path.name)
        fitted = register_field(band_8um, catalogue, glon, glat)
        fitted.header(band_8um.shape).totextfile(output / f"{path.stem}.hdr", overwrite=True)
        results.append({"field": path.name, "glon": fitted.glon, "glat": fitted.glat, "scale_arcsec": fitted.scale_arcsec,
                        "name_scale_arcsec": width_deg * 3600.0 / band_8um.shape[1] if width_deg else float("nan"),
                        "score": fitted.score, "bubbles": fitted.bubbles})
    return results
