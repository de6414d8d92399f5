"""Fine-tuning pieces: composite rendering of simulated crops, windows in arcsec, real fields as training fields, one epoch."""

import numpy as np
import torch
from scipy import stats

from nightshift.bubbles.config import preset
from nightshift.bubbles.finetune import FinetuneSettings, as_training_field, finetune
from nightshift.bubbles.infer import angular_windows
from nightshift.bubbles.model import build_model
from nightshift.bubbles.realdata import CatalogueBubble, RealField
from nightshift.bubbles.simulate import composite_jpeg, decode_composite, render_as_composite, simulate_field
from nightshift.bubbles.windows import car_header

CONFIG = preset("tiny")


def test_composite_rendering_is_an_8_bit_monotone_stretch_of_the_crop() -> None:
    crop = simulate_field(CONFIG, 3, 0).pixels[:, :128, :128]
    for seed in range(4):
        rendered = render_as_composite(crop, np.random.default_rng(seed))
        assert rendered.shape == crop.shape and rendered.dtype == np.float32
        assert rendered.min() >= 0 and rendered.max() <= 255
        # the composite itself is 8 bits at its own pixels; the rendering brings it back to the crop's side
        display = decode_composite(composite_jpeg(crop, np.random.default_rng(seed)))
        assert display.shape == crop.shape and np.array_equal(display, np.round(display))
        # brighter sky stays brighter (blurred by the coarsening and JPEG, never inverted)
        assert stats.spearmanr(crop[0].ravel(), rendered[0].ravel()).statistic > 0.5


def test_windows_in_arcsec_follow_the_pixel_scale() -> None:
    config = preset("default")  # windows 150 / 300 / 600 px at 1.2"/px
    assert angular_windows(config, car_header(30.0, 0.0, (400, 800), 1.2), (400, 800)).window_px == (150, 300, 400)
    assert angular_windows(config, car_header(30.0, 0.0, (400, 800), 6.0), (400, 800)).window_px == (32, 60, 120)


def test_one_epoch_on_a_real_field_and_simulated_ones_changes_the_model() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (2, 200, 300)).astype(np.float32)
    header = car_header(30.0, 0.0, (200, 300), 3.0)
    field = as_training_field(RealField("fake.jpg", pixels, np.zeros((200, 300, 3), np.uint8), header),
                              [CatalogueBubble(0, 150.0, 100.0, 20.0, 30.0, 0.0, False)])
    assert field.bubbles[0].clear and field.bubbles[0].radius_arcsec == 60.0  # every catalogue bubble is a target
    model = build_model(CONFIG)
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    finetune(model, CONFIG, [field], FinetuneSettings(epochs=1, simulated_fields=1, crops_per_real_bubble=2), seed=1,
             on_epoch=lambda epoch, loss, seconds: losses.append(loss))
    assert len(losses) == 1 and np.isfinite(losses[0])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
