"""The networks: every preset builds; outputs have the documented shapes; weights round-trip."""

from pathlib import Path

import torch

from nightshift.ghosts.config import preset
from nightshift.ghosts.model import GhostDetector, build_model, compact_backbone, load_detector, save_weights, write_card


def test_compact_backbone_feature_maps() -> None:
    backbone = compact_backbone(body_channels=(8, 8, 16, 16), fpn_channels=12)
    features = backbone(torch.zeros(1, 3, 64, 64))
    assert list(features) == ["0", "1", "2", "3", "pool"]
    assert [tuple(f.shape) for f in features.values()] == [(1, 12, 16, 16), (1, 12, 8, 8), (1, 12, 4, 4), (1, 12, 2, 2), (1, 12, 1, 1)]


def test_every_preset_builds() -> None:
    counts = {name: sum(p.numel() for p in build_model(preset(name)).parameters()) for name in ("tiny", "default", "paper")}
    assert counts["tiny"] < counts["default"] < 2_500_000 < 40_000_000 < counts["paper"]  # default fits in 10 MB as float32


def test_detect_and_losses_shapes() -> None:
    torch.manual_seed(0)
    detector = GhostDetector(preset("tiny"))
    images = [torch.rand(3, 400, 400)]
    masks = torch.zeros(1, 400, 400, dtype=torch.uint8)
    masks[0, 100:150, 100:160] = 1
    target = {"boxes": torch.tensor([[100.0, 100.0, 160.0, 150.0]]), "labels": torch.tensor([2]), "masks": masks}
    losses = detector.losses(images, [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    output = detector.detect(images)[0]
    n = output["boxes"].shape[0]
    assert output["masks"].shape == (n, 1, 400, 400) and output["scores"].shape == (n,)
    assert not detector.net.training


def test_weights_round_trip(tmp_path: Path) -> None:
    config = preset("tiny")
    detector = GhostDetector(config)
    weights = save_weights(detector, tmp_path / "w.safetensors")
    card = write_card(tmp_path / "w.json", config=config, metrics={"ap50": 0.5}, data_seed=3)
    loaded = load_detector(weights, config)
    assert all(torch.equal(a, b) for a, b in zip(detector.state_dict().values(), loaded.state_dict().values()))
    assert '"data_seed": 3' in card.read_text()
