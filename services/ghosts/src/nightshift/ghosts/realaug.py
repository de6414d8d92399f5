"""Augmentation of the real DES images as the real data varies (issue 18 item 1).

Every real training image is drawn anew each time it is used, in this order:

1. *copy-paste* (probability ``copy_paste``): 1 to ``paste_max`` annotated artefacts of another real
   training image (a donor) are pasted at their own position (all images share the DECam focal plane,
   so the CCD gaps line up), with probability ``paste_flip`` first mirrored with the donor about the
   image's vertical and/or horizontal axis (the focal plane is symmetric to a few pixels); annotations
   of the target they cover lose the covered pixels (dropped when fewer than 30 pixels remain) and the
   pasted instance is added with its whole mask (its box is the mask's). With ``paste_sky`` the pasted
   pixels are those of the instance's mask that are live (on a CCD that is on) in both images, shifted
   by the difference of the two images' sky levels in a ring around the mask, so the paste leaves no
   step at its edge and no donor gap or dead CCD over live pixels of the target; with ``paste_feather``
   > 0 the donor's pixels are blended in over that many pixels inside the mask's edge (weight rising
   linearly with the distance from the edge; no pixel outside the mask changes);
2. a random subset of horizontal flip, vertical flip and a rotation by 0, 90, 180 or 270 degrees;
3. *scale jitter*: zoom by a factor in ``scale`` about the image centre (bilinear for the image,
   nearest for the masks), cropped or padded (with the 8-bit level between CCDs, 23) back to the size;
4. *brightness and contrast*: ``(I - mean) c + mean + b``; *colour*: a gain per RGB channel
   (probability ``colour``) although the DES images are grey;
5. *noise*: Gaussian read noise of 0-3 levels (probability 0.3);
6. *JPEG re-compression* at a quality drawn from ``jpeg_quality`` (probability ``jpeg``).

Only donors of the same training set are used: a cross-validation fold never pastes a scored image's
artefacts into a training image.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy.ndimage import binary_dilation, distance_transform_edt

from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.focalplane import GAP_LEVEL, ccd_map
from nightshift.ghosts.realdata import RealImage

__all__ = ["RealAugmentation", "augment_real", "live_pixels"]

_MIN_PIXELS = 30


@dataclasses.dataclass(frozen=True)
class RealAugmentation:
    """Strengths of the real-image augmentation (see the module docstring)."""

    copy_paste: float = 0.5
    scale: tuple[float, float] = (0.85, 1.15)
    brightness: float = 12.0
    contrast: tuple[float, float] = (0.8, 1.25)
    colour: float = 0.3
    colour_gain: float = 0.06
    jpeg: float = 0.6
    jpeg_quality: tuple[int, int] = (40, 95)
    paste_max: int = 2
    paste_flip: float = 0.0
    paste_sky: bool = False
    paste_feather: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def live_pixels(image: np.ndarray) -> np.ndarray:
    """Boolean (H, W) map of the pixels on a CCD that is on in this 8-bit image (the CCD's mean above the gap level + 8)."""
    grey = image[..., 0] if image.ndim == 3 else image
    labels = ccd_map(grey.shape[0])
    sums = np.bincount(labels.ravel(), weights=grey.ravel().astype(np.float64), minlength=256)
    counts = np.bincount(labels.ravel(), minlength=256)
    on = sums > (GAP_LEVEL + 8) * np.maximum(counts, 1)
    on[0] = False
    return on[labels]


_RING_PX = 6


def _ring(mask: np.ndarray, width: int = _RING_PX) -> np.ndarray:
    return binary_dilation(mask, iterations=width) & ~mask


def _paste(
    image: np.ndarray, artefacts: list[Artefact], donor: RealImage, rng: np.random.Generator, settings: RealAugmentation,
) -> tuple[np.ndarray, list[Artefact]]:
    if not donor.artefacts:
        return image, artefacts
    count = min(len(donor.artefacts), int(rng.integers(1, settings.paste_max + 1)))
    chosen = [donor.artefacts[i] for i in rng.choice(len(donor.artefacts), size=count, replace=False)]
    source = donor.image
    masks = [a.mask for a in chosen]
    donor_live = live_pixels(source) if settings.paste_sky else None
    if settings.paste_flip and rng.uniform() < settings.paste_flip:
        axes = [axis for axis in (0, 1) if rng.uniform() < 0.5] or [int(rng.integers(0, 2))]
        source = np.flip(source, axis=axes)
        masks = [np.flip(m, axis=axes) for m in masks]
        donor_live = None if donor_live is None else np.flip(donor_live, axis=axes)  # the donor's own CCDs, mirrored
    image = image.copy()
    if settings.paste_sky:
        live = live_pixels(image) & donor_live
    for pasted, mask in zip(chosen, masks):
        mask = np.ascontiguousarray(mask)
        ys, xs = np.nonzero(mask)
        if not len(ys):
            continue
        # work in the mask's box grown by the sky ring's width (nothing outside it changes)
        margin = _RING_PX + 2
        box = (slice(max(ys.min() - margin, 0), ys.max() + margin + 1), slice(max(xs.min() - margin, 0), xs.max() + margin + 1))
        crop, src = image[box], source[box]
        inside = mask[box]
        if settings.paste_sky:
            both = live[box]
            where = inside & both
            ring = _ring(inside) & both
            occupied = np.logical_or.reduce([a.mask[box] for a in artefacts] + [np.zeros_like(inside)])
            ring = ring & ~occupied if (ring & ~occupied).sum() >= 20 else ring
            offset = float(np.median(crop[ring].astype(np.float32)) - np.median(src[ring].astype(np.float32))) if ring.any() else 0.0
        else:
            where, offset = inside, 0.0
        pixels = src[where].astype(np.float32) + offset
        if settings.paste_feather > 0:  # the distance from the mask's edge (not from the image's)
            weight = np.clip(distance_transform_edt(np.pad(inside, 1, mode="edge"))[1:-1, 1:-1] / float(settings.paste_feather), 0.0, 1.0)[where]
            pixels = weight[:, None] * pixels + (1.0 - weight[:, None]) * crop[where].astype(np.float32)
        crop[where] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        artefacts = [Artefact(a.label, a.mask & ~mask) for a in artefacts]
        artefacts = [a for a in artefacts if a.mask.sum() >= _MIN_PIXELS]
        artefacts.append(Artefact(pasted.label, mask.copy()))
    return image, artefacts


def _geometry(image: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if rng.uniform() < 0.5:
        image, masks = image[:, ::-1], masks[:, :, ::-1]
    if rng.uniform() < 0.5:
        image, masks = image[::-1], masks[:, ::-1]
    turns = int(rng.integers(0, 4))
    image, masks = np.rot90(image, turns, axes=(0, 1)), np.rot90(masks, turns, axes=(1, 2))
    return np.ascontiguousarray(image), np.ascontiguousarray(masks)


def _zoom(image: np.ndarray, masks: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    scaled = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    scaled_masks = np.stack([np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
                             for m in masks]) if len(masks) else np.zeros((0, size[1], size[0]), bool)
    canvas = np.full_like(image, GAP_LEVEL)
    canvas_masks = np.zeros((len(masks), height, width), bool)
    # centre the scaled image on the canvas: crop when larger, pad when smaller
    sy, sx = (size[1] - height) // 2, (size[0] - width) // 2
    src_y, dst_y = (sy, 0) if sy >= 0 else (0, -sy)
    src_x, dst_x = (sx, 0) if sx >= 0 else (0, -sx)
    h, w = min(height - dst_y, size[1] - src_y), min(width - dst_x, size[0] - src_x)
    canvas[dst_y:dst_y + h, dst_x:dst_x + w] = scaled[src_y:src_y + h, src_x:src_x + w]
    canvas_masks[:, dst_y:dst_y + h, dst_x:dst_x + w] = scaled_masks[:, src_y:src_y + h, src_x:src_x + w]
    return canvas, canvas_masks


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def augment_real(
    item: RealImage, rng: np.random.Generator, *, donors: Sequence[RealImage] = (), settings: RealAugmentation = RealAugmentation(),
) -> tuple[np.ndarray, list[Artefact]]:
    """One random augmentation of a real image: (uint8 (H, W, 3) image, artefacts).

    Parameters
    ----------
    item : RealImage
        The image and its annotations.
    rng : numpy.random.Generator
        Source of every random choice.
    donors : sequence of RealImage
        Images whose artefacts may be pasted (the image itself is skipped).
    settings : RealAugmentation
        Strengths.
    """
    image, artefacts = item.image, list(item.artefacts)
    others = [d for d in donors if d.name != item.name and d.artefacts]
    if others and rng.uniform() < settings.copy_paste:
        image, artefacts = _paste(image, artefacts, others[int(rng.integers(len(others)))], rng, settings)
    height, width = image.shape[:2]
    masks = np.stack([a.mask for a in artefacts]) if artefacts else np.zeros((0, height, width), bool)
    image, masks = _geometry(image, masks, rng)
    factor = float(rng.uniform(*settings.scale))
    if abs(factor - 1.0) > 0.01:
        image, masks = _zoom(image, masks, factor)
    pixels = image.astype(np.float32)
    mean = float(pixels.mean())
    pixels = (pixels - mean) * float(rng.uniform(*settings.contrast)) + mean + float(rng.uniform(-1, 1) * settings.brightness)
    if rng.uniform() < settings.colour:
        pixels = pixels * (1.0 + rng.uniform(-settings.colour_gain, settings.colour_gain, size=3)).astype(np.float32)
    if rng.uniform() < 0.3:
        pixels = pixels + rng.normal(0.0, float(rng.uniform(0, 3)), size=pixels.shape).astype(np.float32)
    image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    if rng.uniform() < settings.jpeg:
        image = _jpeg(image, int(rng.integers(settings.jpeg_quality[0], settings.jpeg_quality[1] + 1)))
    kept = [Artefact(a.label, m) for a, m in zip(artefacts, masks) if m.sum() >= _MIN_PIXELS]
    return image, kept
