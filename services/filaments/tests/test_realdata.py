"""The real cut-out loads with its masks, and splits by columns without overlap."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift.filaments.config import default_real_data_dir, preset
from nightshift.filaments.realdata import load_real_cutout, real_data_available

pytestmark = pytest.mark.skipif(not real_data_available(default_real_data_dir()),
                                reason="the real Hi-GAL cut-out (../shared/data/filaments) is not on this machine")


def test_cutout_shapes_units_and_masks() -> None:
    cutout = load_real_cutout(default_real_data_dir())
    assert cutout.column_density.shape == cutout.mask.shape == (500, 300)
    assert 1e21 < np.nanmedian(cutout.column_density) < 1e23  # cm^-2
    assert np.isnan(cutout.column_density[~cutout.usable]).mean() > 0.9
    assert 0.05 < cutout.mask.mean() < 0.15


def test_split_by_columns() -> None:
    config = preset("default")
    cutout = load_real_cutout(default_real_data_dir())
    train, validation = cutout.columns(config.real_train_columns), cutout.columns(config.real_validation_columns)
    assert train.mask.shape[1] + validation.mask.shape[1] <= 300
    np.testing.assert_array_equal(validation.mask, cutout.mask[:, config.real_validation_columns[0]:config.real_validation_columns[1]])
    with pytest.raises(ValueError, match="columns"):
        cutout.columns((250, 400))


def test_missing_files_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="higal_image.fits"):
        load_real_cutout(tmp_path)
