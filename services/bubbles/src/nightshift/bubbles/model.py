"""SSD300 on two channels (8 um, 24 um) with the paper's priors, wired from torchvision's detection parts.

torchvision's :class:`~torchvision.models.detection.SSD` (box coder, matcher, post-processing),
:class:`~torchvision.models.detection.ssd.SSDHead` and
:class:`~torchvision.models.detection.anchor_utils.DefaultBoxGenerator` with the paper's priors (min
sizes 30/60/111/162/213/264 and max 315 pixels, steps 8/16/32/64/100/300, aspect ratios
[2],[2,3],[2,3],[2,3],[2],[2]: 8732 priors). Bodies: torchvision's VGG16 SSD feature extractor with a
2-channel first convolution (``paper``), or a compact strided body with the same six feature-map
sizes (``default``, ``tiny``). The loss is torchvision's with the paper's floor of hard negatives per
image, so crops without bubbles (negative sampling) teach the classifier too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models import vgg16
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, SSDHead, _vgg_extractor

from nightshift.bubbles.config import ASPECT_RATIOS, IMAGE_SIZE, MAX_SIZE, MIN_SIZES, BubblesConfig
from nightshift.core.registry import bundled_weights, smoke_input, weights_smoke

__all__ = ["BubbleSSD", "CompactBody", "build_model", "prior_generator", "save_weights", "load_weights", "write_card",
           "PACKAGE_WEIGHTS", "shipped_weights", "smoke_check"]

PACKAGE_WEIGHTS = Path(__file__).parent / "weights"

_STEPS = (8, 16, 32, 64, 100, 300)


def prior_generator() -> DefaultBoxGenerator:
    """The paper's default boxes: scales = (min sizes..., 315) / 300 on feature maps 38/19/10/5/3/1."""
    return DefaultBoxGenerator(
        [list(r) for r in ASPECT_RATIOS], scales=[s / IMAGE_SIZE for s in (*MIN_SIZES, MAX_SIZE)], steps=list(_STEPS),
    )


def _conv(in_channels: int, out_channels: int, *, stride: int = 1, padding: int = 1) -> nn.Sequential:
    # group norm (groups of 8 channels): independent of the batch size, and the 1x1 map still normalises
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=padding, bias=False),
                         nn.GroupNorm(max(1, out_channels // 8), out_channels), nn.ReLU(inplace=True))


class CompactBody(nn.Module):
    """A small strided convolutional body giving SSD300's six feature maps (38, 19, 10, 5, 3, 1 cells).

    Input (N, 2, 300, 300) float32; output an ordered dict of (N, channels[i], s_i, s_i) maps.
    """

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        c = channels
        self.stem = nn.Sequential(  # 300 -> 150 -> 75 -> 38, thin at full resolution where convolutions cost most
            _conv(2, c[0] // 4, stride=2), _conv(c[0] // 4, c[0] // 2, stride=2), _conv(c[0] // 2, c[0], stride=2),
            _conv(c[0], c[0]),
        )
        self.stages = nn.ModuleList([
            nn.Sequential(_conv(c[0], c[1], stride=2), _conv(c[1], c[1])),  # 19
            nn.Sequential(_conv(c[1], c[2], stride=2), _conv(c[2], c[2])),  # 10
            nn.Sequential(_conv(c[2], c[3], stride=2)),  # 5
            nn.Sequential(_conv(c[3], c[4], padding=0)),  # 3
            nn.Sequential(_conv(c[4], c[5], padding=0)),  # 1
        ])
        self.out_channels = list(channels)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.stem(x)
        maps = [x]
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return {str(i): m for i, m in enumerate(maps)}


def _vgg16_body() -> tuple[nn.Module, list[int]]:
    """torchvision's SSD300 VGG16 extractor (to conv7, L2Norm 20, four extra blocks) on 2 input channels."""
    vgg = vgg16(weights=None)
    vgg.features[0] = nn.Conv2d(2, 64, kernel_size=3, padding=1)
    return _vgg_extractor(vgg, False, 5), [512, 1024, 512, 256, 256, 256]


class BubbleSSD(SSD):
    """torchvision's SSD with a floor of ``min_negatives`` hard-negative priors per image in the loss.

    Inputs: a list of (2, 300, 300) float32 tensors in [0, 1] (see :mod:`nightshift.bubbles.preprocess`);
    targets: ``boxes`` (K, 4) float32 in pixels, ``[x_min, y_min, x_max, y_max]``, and ``labels`` (K,)
    int64 equal to 1. Training mode returns the losses, evaluation mode the detections (torchvision's
    contract).
    """

    def __init__(self, *args: Any, min_negatives: int = 20, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_negatives = min_negatives

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor], anchors: list[Tensor],
                     matched_idxs: list[Tensor]) -> dict[str, Tensor]:
        bbox_regression, cls_logits = head_outputs["bbox_regression"], head_outputs["cls_logits"]
        num_foreground, bbox_loss, cls_targets = 0, [], []
        for target, regression, logits, image_anchors, matched in zip(targets, bbox_regression, cls_logits, anchors, matched_idxs):
            foreground = torch.where(matched >= 0)[0]
            matched_targets = matched[foreground]
            num_foreground += matched_targets.numel()
            encoded = self.box_coder.encode_single(target["boxes"][matched_targets], image_anchors[foreground])
            bbox_loss.append(F.smooth_l1_loss(regression[foreground], encoded, reduction="sum"))
            classes = torch.zeros(logits.size(0), dtype=torch.int64, device=logits.device)
            classes[foreground] = target["labels"][matched_targets]
            cls_targets.append(classes)
        cls_target = torch.stack(cls_targets)
        num_classes = cls_logits.size(-1)
        cls_loss = F.cross_entropy(cls_logits.reshape(-1, num_classes), cls_target.reshape(-1), reduction="none").view(cls_target.shape)
        positive = cls_target > 0
        # hard negatives: 3 per positive as torchvision, but at least min_negatives per image
        wanted = (self.neg_to_pos_ratio * positive.sum(1, keepdim=True)).clamp(min=self.min_negatives)
        negative_loss = cls_loss.clone()
        negative_loss[positive] = -float("inf")
        _, order = negative_loss.sort(1, descending=True)
        negative = order.sort(1)[1] < wanted
        normaliser = max(1, num_foreground)
        return {
            "bbox_regression": torch.stack(bbox_loss).sum() / normaliser,
            "classification": (cls_loss[positive].sum() + cls_loss[negative].sum()) / normaliser,
        }


def build_model(config: BubblesConfig) -> BubbleSSD:
    """The SSD300 of ``config`` (randomly initialised: nothing is downloaded)."""
    if config.backbone == "vgg16":
        body, channels = _vgg16_body()
    else:
        body = CompactBody(config.compact_channels)
        channels = list(config.compact_channels)
    priors = prior_generator()
    head = SSDHead(channels, priors.num_anchors_per_location(), num_classes=2)
    model = BubbleSSD(
        body, priors, (IMAGE_SIZE, IMAGE_SIZE), num_classes=2, image_mean=[0.0, 0.0], image_std=[1.0, 1.0], head=head,
        score_thresh=0.05, nms_thresh=config.window_nms_iou, detections_per_img=50, topk_candidates=200,
        min_negatives=config.min_negatives,
    )
    return model


def save_weights(model: nn.Module, path: Path) -> Path:
    """Write the model's state dict as safetensors (contiguous copies) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def load_weights(path: Path, config: BubblesConfig, *, device: str | torch.device = "cpu") -> BubbleSSD:
    """Build the model of ``config``, load safetensors weights into it, move it to ``device``, eval mode."""
    model = build_model(config)
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()


def write_card(path: Path, *, config: BubblesConfig, metrics: dict[str, float], data_seed: int) -> Path:
    """Write the JSON card beside a weights file: ``{"name", "metrics", "config", "data_seed"}``."""
    path.write_text(json.dumps({"name": config.name, "metrics": metrics, "config": config.to_dict(),
                                "data_seed": data_seed}, indent=2, sort_keys=True) + "\n")
    return path


def shipped_weights() -> Path:
    """The safetensors file of the default model shipped in the package (its JSON card beside it).

    Raises
    ------
    FailedPrecondition
        If the package holds no weights (not trained yet: ``nightshift-bubbles train --preset default --ship``).
    """
    return bundled_weights(PACKAGE_WEIGHTS, ".safetensors")


@torch.no_grad()
def _smoke_outputs(weights: Path, config: dict[str, Any]) -> list[np.ndarray]:
    # the heads' raw regressions and logits: the detector's score threshold would drop NaN boxes unseen
    model = load_weights(weights, BubblesConfig.from_dict(config))
    features = list(model.backbone(torch.from_numpy(smoke_input(1, 2, IMAGE_SIZE, IMAGE_SIZE))).values())
    head = model.head(features)
    return [head["bbox_regression"].numpy(), head["cls_logits"].numpy()]


smoke_check = weights_smoke(".safetensors", _smoke_outputs)
"""The registry's check of a bubbles version before it becomes ``LATEST``: it loads and gives finite outputs."""
