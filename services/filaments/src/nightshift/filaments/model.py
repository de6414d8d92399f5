"""The U-Net: ``levels`` resolution levels, two 3x3 convolutions per level (the seed's U-Net5 has 5
levels, 23 layers); logits out, one channel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nightshift.core.registry import smoke_input, weights_smoke
from nightshift.filaments.config import FilamentsConfig

__all__ = ["UNet", "build_unet", "unet_from_config", "save_weights", "load_network", "bundled_weights", "load_checkpoint",
           "smoke_check"]

WEIGHTS_DIR = Path(__file__).with_name("weights")


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net (Ronneberger+2015) for one-band segmentation.

    Parameters
    ----------
    encoder : list of nn.Module
        One block per level, finest first; the last is the bottleneck.
    upsamplers : list of nn.Module
        Transposed convolutions from each coarser level up to the next finer one (coarsest first).
    decoder : list of nn.Module
        Blocks merging each upsampled map with the encoder's skip connection (coarsest first).
    head : nn.Module
        1x1 convolution to one logit channel.

    Input (N, 1, H, W) float32 normalised N(H2), H and W multiples of 2**(levels-1); output
    (N, 1, H, W) logits (sigmoid gives the filament probability).
    """

    def __init__(self, encoder: list[nn.Module], upsamplers: list[nn.Module], decoder: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(encoder)
        self.upsamplers = nn.ModuleList(upsamplers)
        self.decoder = nn.ModuleList(decoder)
        self.head = head
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for index, block in enumerate(self.encoder):
            x = block(x if index == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for upsample, block in zip(self.upsamplers, self.decoder):
            x = block(torch.cat([skips.pop(), upsample(x)], dim=1))
        return self.head(x)


def build_unet(*, levels: int = 4, base_channels: int = 16, in_channels: int = 1) -> UNet:
    """A U-Net with ``levels`` levels of ``base_channels * 2**level`` channels.

    Parameters
    ----------
    levels : int
        Resolution levels, including the bottleneck (at least 1).
    base_channels : int
        Channels of the finest level.
    in_channels : int
        Input bands.
    """
    if levels < 1 or base_channels < 1:
        raise ValueError(f"levels={levels}, base_channels={base_channels}: expected both at least 1")
    channels = [base_channels * 2**level for level in range(levels)]
    encoder = [_double_conv(c_in, c_out) for c_in, c_out in zip([in_channels, *channels[:-1]], channels)]
    coarse_to_fine = channels[::-1]
    upsamplers = [nn.ConvTranspose2d(c, c // 2, 2, stride=2) for c in coarse_to_fine[:-1]]
    decoder = [_double_conv(c, c // 2) for c in coarse_to_fine[:-1]]
    return UNet(encoder, upsamplers, decoder, nn.Conv2d(channels[0], 1, 1))


def unet_from_config(config: FilamentsConfig) -> UNet:
    """The U-Net a config describes (freshly initialised by torch's current random state)."""
    return build_unet(levels=config.levels, base_channels=config.base_channels)


def save_weights(network: nn.Module, path: str | Path) -> Path:
    """Write the network's state as one ``.safetensors`` file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}, str(path))
    return path


def load_network(path: str | Path, config: FilamentsConfig, device: str | torch.device = "cpu") -> UNet:
    """The U-Net of ``config`` with the weights of a ``.safetensors`` file, in eval mode on ``device``."""
    from safetensors.torch import load_file

    network = unet_from_config(config)
    network.load_state_dict(load_file(str(path)))
    return network.to(device).eval()


def bundled_weights() -> Path:
    """The default model shipped in the package: its one ``.safetensors`` file (the JSON card beside it).

    Raises
    ------
    FileNotFoundError
        Not exactly one weights file in the package's ``weights/``.
    """
    found = sorted(WEIGHTS_DIR.glob("*.safetensors"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one shipped model in {WEIGHTS_DIR}, found {[p.name for p in found]}")
    return found[0]


def load_checkpoint(path: str | Path | None = None, device: str | torch.device = "cpu") -> tuple[UNet, FilamentsConfig, dict]:
    """A weights file (default: the shipped one) with the config of its JSON card (same stem).

    Returns
    -------
    network : UNet
        In eval mode on ``device``.
    config : FilamentsConfig
        The exact config it was trained with.
    card : dict
        ``{"name", "metrics", "config", "data_seed"}``.
    """
    import json

    path = Path(path) if path is not None else bundled_weights()
    card = json.loads(path.with_suffix(".json").read_text())
    config = FilamentsConfig.from_dict(card["config"])
    return load_network(path, config, device), config, card


@torch.no_grad()
def _smoke_outputs(weights: Path, config: dict[str, Any]) -> np.ndarray:
    # the U-Net's raw logits on one patch, not the stitched probability map
    unet = FilamentsConfig.from_dict(config)
    return load_network(weights, unet)(torch.from_numpy(smoke_input(1, 1, unet.patch_px, unet.patch_px))).numpy()


smoke_check = weights_smoke(".safetensors", _smoke_outputs)
"""The registry's check of a filaments version before it becomes ``LATEST``: it loads and gives finite logits."""
