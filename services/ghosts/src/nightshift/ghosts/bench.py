"""``nightshift-ghosts bench``: the service (gRPC, tiles by reference through S3) against the bare model.

It sits above the servicer (it starts the service), so the servicer and the command line's I/O
layer (:mod:`nightshift.ghosts.workflows`) stay free of it.
"""

from __future__ import annotations

from typing import Any

from nightshift.core.devices import device_label

__all__ = ["benchmark"]


def benchmark(*, tiles: int, batch_size: int, seed: int) -> dict[str, Any]:
    """Service Infer over gRPC with tiles by reference vs the bare model, on simulated exposures."""
    from nightshift.core.bench import benchmark_service
    from nightshift.core.s3server import start_local_s3
    from nightshift.core.tiles import make_tile
    from nightshift.ghosts.config import BANDS
    from nightshift.ghosts.preprocess import image_to_pixels
    from nightshift.ghosts.servicer import GhostsModel
    from nightshift.ghosts.simulate import simulate_dataset
    from nightshift.v1 import tile_pb2

    device = device_label()
    with start_local_s3("rclone") as s3:
        store = s3.store()
        bands = [tile_pb2.Band(name=b, unit="8-bit") for b in BANDS]
        messages = [make_tile(image_to_pixels(e.image), bands=bands, survey="DES", field=f"bench-{i}", store=store, inline_limit_bytes=0)
                    for i, e in enumerate(simulate_dataset(tiles, seed, first_index=3_000_000))]
        figures = benchmark_service(GhostsModel(store=store), messages, store=store, batch_size=batch_size, device=device)
    return figures
