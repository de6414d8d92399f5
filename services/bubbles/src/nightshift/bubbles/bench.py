"""``nightshift-bubbles bench``: the service (gRPC, tiles by reference through S3) against the bare model.

It sits above the servicer (it starts the service), so the servicer stays the top layer of the
serving path and the command line's I/O layer (:mod:`nightshift.bubbles.workflows`) never imports it.
"""

from __future__ import annotations

from typing import Any

from nightshift.bubbles.config import data_seeds
from nightshift.bubbles.config import preset as config_preset
from nightshift.core.devices import device_label

__all__ = ["benchmark"]


def benchmark(*, tiles: int, batch_size: int, seed: int) -> dict[str, Any]:
    """Service Infer over gRPC with tiles by reference vs the bare model, on windows of held-out simulated fields."""
    from nightshift.bubbles.servicer import BubblesModel
    from nightshift.bubbles.simulate import field_tiles, simulate_field
    from nightshift.core.bench import benchmark_service
    from nightshift.core.s3server import start_local_s3

    config = config_preset("default")
    device = device_label()
    with start_local_s3("rclone") as s3:
        store = s3.store()
        messages: list = []
        index = 0
        while len(messages) < tiles:
            messages += field_tiles(simulate_field(config, data_seeds(seed)["test"], index), config, store=store)
            index += 1
        return benchmark_service(BubblesModel(store=store), messages[:tiles], store=store, batch_size=batch_size, device=device)
