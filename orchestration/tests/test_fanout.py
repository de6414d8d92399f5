"""Fan-out to a real tile-statistics server: which tiles it accepts, batches, and calls recorded once."""

from __future__ import annotations

import numpy as np

from nightshift.core.server import BackgroundServer
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import make_tile
from nightshift.core.tilestats import TileStatisticsModel
from nightshift.orchestration.config import ServiceEndpoint
from nightshift.orchestration.fanout import accepts, call_batches, describe, infer_batches, recorded_results
from nightshift.orchestration.layout import NightLayout


def _tiles(bands: tuple[str, ...], count: int, store: ObjectStore) -> list:
    rng = np.random.default_rng(0)
    return [make_tile(rng.normal(size=(len(bands), 8, 8)).astype(np.float32), bands=list(bands), survey="s", field=f"f{i}",
                      store=store) for i in range(count)]


def test_service_gets_only_its_tiles_in_fixed_batches_each_called_once(store: ObjectStore) -> None:
    layout = NightLayout(store, "2026-03-04")
    with BackgroundServer(TileStatisticsModel(bands=("g", "r")), store=store) as server:
        plan = describe(ServiceEndpoint(name="stats", target=server.target, batch_tiles=3, timeout_s=10))
        mine, others = _tiles(("g", "r"), 7, store), _tiles(("r", "g"), 2, store)
        assert all(accepts(plan, t) for t in mine) and not any(accepts(plan, t) for t in others)

        batches = call_batches(plan, others + mine[::-1])
        assert [len(b) for b in batches] == [3, 3, 1]
        assert [t.tile_id for b in batches for t in b] == sorted(t.tile_id for t in mine)

        first = infer_batches(store, layout, plan, "input", batches)
        second = infer_batches(store, layout, plan, "input", batches)
    assert (first.calls, first.tiles_inferred, first.tiles_recorded_before) == (3, 7, 0)
    assert (second.calls, second.tiles_recorded_before) == (0, 7)
    responses = recorded_results(store, layout, plan, "input", batches)
    assert [r.tile_id for resp in responses for r in resp.results] == [t.tile_id for b in batches for t in b]
