"""The Mask R-CNN networks: torchvision's ResNet-50-FPN (``paper``) and a compact one (``default``).

Both are torchvision :class:`~torchvision.models.detection.MaskRCNN` networks with 4 classes
(background, bright, faint, rays), randomly initialised (no weights can be downloaded). The compact
one is composed from small parts: a four-stage ResNet-style body of :class:`BasicBlock` with group
normalisation (batches of two images make batch statistics useless), an FPN
(:class:`BackboneWithFPN`), an anchor generator with one size per FPN level, and narrow box and mask
heads.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.resnet import BasicBlock
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from nightshift.core.registry import smoke_input, weights_smoke
from nightshift.ghosts.config import CLASSES, TILE_SIZE, GhostsConfig

__all__ = [
    "NUM_CLASSES", "IMAGE_MEAN", "IMAGE_STD", "compact_backbone", "build_model", "GhostDetector", "save_weights",
    "load_detector", "write_card", "smoke_check",
]

NUM_CLASSES = len(CLASSES) + 1
IMAGE_MEAN = (0.18, 0.18, 0.18)
"""Mean of the [0, 1] input over the simulated and real images (the network normalises with it)."""
IMAGE_STD = (0.10, 0.10, 0.10)


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


def _stage(in_channels: int, out_channels: int) -> nn.Sequential:
    """A stride-2 residual stage: one down-sampling BasicBlock and one plain BasicBlock."""
    downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False), _group_norm(out_channels))
    return nn.Sequential(
        BasicBlock(in_channels, out_channels, stride=2, downsample=downsample, norm_layer=_group_norm),
        BasicBlock(out_channels, out_channels, norm_layer=_group_norm),
    )


def compact_backbone(*, body_channels: tuple[int, ...], fpn_channels: int) -> BackboneWithFPN:
    """A small ResNet-style body (strides 4, 8, 16, 32) with an FPN on its four stages.

    Parameters
    ----------
    body_channels : tuple of 4 int
        Channels of the four stages.
    fpn_channels : int
        Channels of each FPN output.

    Returns
    -------
    BackboneWithFPN
        Takes (B, 3, H, W) float32 normalised images; returns an OrderedDict of 5 feature maps
        ("0".."3" at strides 4..32 and "pool" at 64), each (B, fpn_channels, H/s, W/s).
    """
    if len(body_channels) != 4:
        raise ValueError(f"body_channels {body_channels}: expected 4 stage widths")
    stem_channels = body_channels[0]
    body = nn.Sequential()
    body.add_module("stem", nn.Sequential(
        nn.Conv2d(3, stem_channels, 5, stride=2, padding=2, bias=False), _group_norm(stem_channels), nn.ReLU(inplace=True),
    ))
    previous = stem_channels
    for index, channels in enumerate(body_channels, start=1):
        body.add_module(f"layer{index}", _stage(previous, channels))
        previous = channels
    return BackboneWithFPN(
        body, return_layers={f"layer{i}": str(i - 1) for i in range(1, 5)}, in_channels_list=list(body_channels),
        out_channels=fpn_channels, extra_blocks=LastLevelMaxPool(),
    )


def build_model(config: GhostsConfig) -> MaskRCNN:
    """The randomly initialised Mask R-CNN of a configuration.

    ``config.backbone == "resnet50"`` gives ``maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
    num_classes=4)``; ``"compact"`` gives :func:`compact_backbone` with narrow heads.
    """
    common = dict(
        min_size=config.image_size, max_size=config.image_size, image_mean=list(IMAGE_MEAN), image_std=list(IMAGE_STD),
        rpn_pre_nms_top_n_train=2 * config.rpn_proposals_train, rpn_post_nms_top_n_train=config.rpn_proposals_train,
        rpn_pre_nms_top_n_test=2 * config.rpn_proposals_test, rpn_post_nms_top_n_test=config.rpn_proposals_test,
        box_batch_size_per_image=config.roi_samples_per_image, box_detections_per_img=config.detections_per_image,
        box_score_thresh=0.01,
    )
    if config.backbone == "resnet50":
        return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, **common)
    channels = config.fpn_channels
    anchors = AnchorGenerator(sizes=tuple((s,) for s in config.anchor_sizes), aspect_ratios=((0.5, 1.0, 2.0),) * 5)
    mask_layers = (config.mask_head_channels,) * 4
    return MaskRCNN(
        compact_backbone(body_channels=config.body_channels, fpn_channels=channels),
        num_classes=None,
        rpn_anchor_generator=anchors,
        box_head=TwoMLPHead(channels * 7 * 7, config.box_head_size),
        box_predictor=FastRCNNPredictor(config.box_head_size, NUM_CLASSES),
        mask_head=MaskRCNNHeads(channels, mask_layers, dilation=1),
        mask_predictor=MaskRCNNPredictor(mask_layers[-1], config.mask_head_channels, NUM_CLASSES),
        **common,
    )


class GhostDetector(nn.Module):
    """A Mask R-CNN with separate training-loss and detection methods.

    Parameters
    ----------
    config : GhostsConfig
        Network configuration.
    """

    def __init__(self, config: GhostsConfig) -> None:
        super().__init__()
        self.config = config
        self.net = build_model(config)

    def losses(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Training losses (puts the network in training mode).

        Parameters
        ----------
        images : list of torch.Tensor
            (3, H, W) float32 in [0, 1].
        targets : list of dict
            ``boxes`` (N, 4) float32 pixels, ``labels`` (N,) int64 in 1..3, ``masks`` (N, H, W) uint8.

        Returns
        -------
        dict
            ``loss_classifier``, ``loss_box_reg``, ``loss_mask``, ``loss_objectness``,
            ``loss_rpn_box_reg``: scalar tensors.
        """
        self.net.train()
        return self.net(images, targets)

    @torch.no_grad()
    def detect(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Detections (puts the network in evaluation mode).

        Parameters
        ----------
        images : list of torch.Tensor
            (3, H, W) float32 in [0, 1].

        Returns
        -------
        list of dict
            Per image: ``boxes`` (N, 4) float32 pixels of the input, ``labels`` (N,) int64 in 1..3,
            ``scores`` (N,) float32 in [0, 1], ``masks`` (N, 1, H, W) float32 probabilities.
        """
        self.net.eval()
        return self.net(images)

    def freeze_body(self, frozen: bool) -> None:
        """Freeze (or release) the backbone's body: the seed's first, heads-only stage."""
        for parameter in self.net.backbone.body.parameters():
            parameter.requires_grad_(not frozen)

    @functools.cached_property
    def parameter_count(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())


def save_weights(detector: GhostDetector, path: str | Path) -> Path:
    """Write the detector's weights as one safetensors file (float32)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in detector.state_dict().items()}, str(path))
    return path


def load_detector(weights: str | Path, config: GhostsConfig, *, device: torch.device | str = "cpu") -> GhostDetector:
    """A detector of ``config`` with the weights of a safetensors file, in evaluation mode.

    Raises
    ------
    FileNotFoundError
        If the weights file does not exist.
    """
    weights = Path(weights)
    if not weights.exists():
        raise FileNotFoundError(f"weights file {weights} does not exist")
    detector = GhostDetector(config)
    detector.load_state_dict(load_file(str(weights)))
    return detector.to(device).eval()


def write_card(path: str | Path, *, config: GhostsConfig, metrics: dict[str, float], data_seed: int, extra: dict | None = None) -> Path:
    """Write the JSON card shipped beside a weights file: ``{"name", "metrics", "config", "data_seed"}`` (+ ``extra``)."""
    path = Path(path)
    card = {**(extra or {}), "name": config.name, "metrics": metrics, "config": config.to_dict(), "data_seed": int(data_seed)}
    path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return path


@torch.no_grad()
def _smoke_outputs(weights: Path, config: dict[str, Any]) -> list[np.ndarray]:
    # the feature maps and the region proposals' raw scores and deltas: detection drops NaN boxes unseen
    net = load_detector(weights, GhostsConfig.from_dict(config)).net
    features = list(net.backbone(torch.from_numpy(smoke_input(1, 3, TILE_SIZE, TILE_SIZE))).values())
    objectness, deltas = net.rpn.head(features)
    return [t.numpy() for t in (*features, *objectness, *deltas)]


smoke_check = weights_smoke(".safetensors", _smoke_outputs)
"""The registry's check of a ghosts version before it becomes ``LATEST``: it loads and gives finite outputs."""
