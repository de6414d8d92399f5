"""Fan-out to a real tile-statistics server: which tiles it accepts, batches, and calls recorded once."""

from __future__ import annotations

import socket

import numpy as np

from nightshift.core.server import BackgroundServer
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import make_tile
from nightshift.core.tilestats import TileStatisticsModel
from nightshift.orchestration.config import ServiceEndpoint
from nightshift.orchestration.fanout import (accepts, call_batches, describe, infer_batches, plan_work, recorded_results,
                                             replica_count, work_batches)
from nightshift.orchestration.layout import NightLayout


class _CountingStatistics(TileStatisticsModel):
    """Tile statistics that count the Infer calls they answer (which replica got how many)."""

    def __init__(self, bands: tuple[str, ...]) -> None:
        super().__init__(bands=bands)
        self.calls = 0

    def infer(self, tiles, model):  # type: ignore[no-untyped-def]
        self.calls += 1
        return super().infer(tiles, model)


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


def test_replica_count_is_the_addresses_a_target_resolves_to() -> None:
    assert replica_count("ipv4:127.0.0.1:5001,127.0.0.1:5002,127.0.0.1:5003") == 3
    assert replica_count("127.0.0.1:5001") == 1
    assert replica_count("dns:///127.0.0.1:5001") == 1
    assert replica_count("localhost:5001") == len({a[4][:2] for a in socket.getaddrinfo("localhost", 5001, type=socket.SOCK_STREAM)})
    assert replica_count("no-such-host.invalid:5001") == 1  # the channel itself reports it UNAVAILABLE


def test_in_flight_calls_are_sized_from_the_replicas_and_shared_by_them(store: ObjectStore) -> None:
    layout = NightLayout(store, "2026-03-05")
    tiles = _tiles(("g", "r"), 44, store)
    replicas = [_CountingStatistics(("g", "r")), _CountingStatistics(("g", "r"))]
    with BackgroundServer(replicas[0], store=store) as first, BackgroundServer(replicas[1], store=store) as second:
        endpoint = ServiceEndpoint(name="stats", target=f"ipv4:{first.target},{second.target}", batch_tiles=1,
                                   max_concurrent_calls=3, timeout_s=10)
        plan = describe(endpoint)
        assert (plan.replicas, plan.max_in_flight) == (2, 6)
        batches = call_batches(plan, tiles)
        infer_batches(store, layout, plan, "input", batches[:4])  # a new channel's first calls go where it connects first
        before = [r.calls for r in replicas]
        outcome = infer_batches(store, layout, plan, "input", batches[4:])  # the same open channel: every replica shares
    served = [r.calls - b for r, b in zip(replicas, before)]
    assert outcome.calls == 40 and sum(served) == 40 and min(served) >= 16, served  # within 10 points of an even split


def test_work_items_hold_whole_call_batches_and_give_them_back(store: ObjectStore) -> None:
    layout = NightLayout(store, "2026-03-06")
    with BackgroundServer(TileStatisticsModel(bands=("g", "r")), store=store) as server:
        plan = describe(ServiceEndpoint(name="stats", target=server.target, batch_tiles=3, timeout_s=10))
    tiles = _tiles(("g", "r"), 11, store) + _tiles(("r", "g"), 2, store)
    items = plan_work(store, layout, plan, "input", tiles, tiles_per_item=7)
    assert [(i.tiles, i.calls) for i in items] == [(6, 2), (5, 2)]  # 3+3 | 3+2: a batch is never split
    batches = [b for item in items for b in work_batches(store, plan, item.key)]
    assert [[t.tile_id for t in b] for b in batches] == [[t.tile_id for t in b] for b in call_batches(plan, tiles)]
    assert plan_work(store, layout, plan, "input", tiles[::-1], tiles_per_item=7) == items  # same tiles, same keys
