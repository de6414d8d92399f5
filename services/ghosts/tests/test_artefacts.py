"""Artefact records and COCO RLE."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as coco_mask

from nightshift.ghosts.artefacts import Artefact, decode_rle, encode_rle, mask_box, uncompressed_rle


def test_hand_made_rle_and_box() -> None:
    mask = np.array([[0, 1, 0], [0, 1, 1]], dtype=bool)
    assert uncompressed_rle(mask) == [2, 2, 1, 1]  # column-major: 0 0 | 1 1 | 0 1
    assert mask_box(mask) == (1.0, 0.0, 3.0, 2.0)
    assert mask_box(np.zeros((3, 3), bool)) == (0.0, 0.0, 0.0, 0.0)


@settings(max_examples=40, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_rle_round_trip_and_agrees_with_pycocotools(mask) -> None:
    counts = uncompressed_rle(mask)
    assert np.array_equal(decode_rle(counts, *mask.shape), mask)
    compressed = coco_mask.frPyObjects({"size": list(mask.shape), "counts": counts}, *mask.shape)
    assert np.array_equal(coco_mask.decode(compressed).astype(bool), mask)
    assert np.array_equal(coco_mask.decode(encode_rle(mask)).astype(bool), mask)


def test_bad_records_are_refused() -> None:
    with pytest.raises(ValueError, match="label 'ghost'"):
        Artefact("ghost", np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="2-D bool"):
        Artefact("bright", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="add up to 3 pixels, expected 2 x 2"):
        decode_rle([1, 2], 2, 2)
