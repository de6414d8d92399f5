"""The benchmark harness on the tile-statistics model, against a real server and store."""

from __future__ import annotations

import json

import numpy as np

from nightshift.core.bench import _packed_in_shards, benchmark_service, report
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import decode_tiles, make_tile
from nightshift.core.tilestats import TileStatisticsModel


def test_benchmark_reports_both_paths_on_the_same_tiles(store: ObjectStore, tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    tiles = [
        make_tile(rng.normal(size=(1, 64, 64)).astype(np.float32), bands=["image"], survey="s", field=f"f{i}",
                  store=store, inline_limit_bytes=0)
        for i in range(6)
    ]
    figures = benchmark_service(TileStatisticsModel(), tiles, store=store, batch_size=4, rounds=2)
    assert figures["tiles"] == 6 and figures["batch_size"] == 4 and figures["task"] == "tilestats"
    assert figures["tiles_per_s"] > 0 and figures["bare_tiles_per_s"] > 0
    assert abs(figures["overhead_ratio"] - figures["tiles_per_s"] / figures["bare_tiles_per_s"]) < 1e-9
    assert 0 < figures["latency_p50_ms"] <= figures["latency_p99_ms"]
    report(figures, tmp_path / "bench.json")
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads((tmp_path / "bench.json").read_text()) == json.loads(json.dumps(figures))


def test_the_service_path_reads_the_tiles_packed_in_shards_as_the_ingest_writes_them(store: ObjectStore) -> None:
    rng = np.random.default_rng(1)
    tiles = [make_tile(rng.normal(size=(2, 256, 256)).astype(np.float32), bands=["a", "b"], survey="s", field=f"f{i}")
             for i in range(10)]  # 512 KiB each, inline: eight to a 4 MiB shard
    packed = _packed_in_shards(decode_tiles(tiles), store, "packing")
    refs = [t.pixels.object_ref for t in packed]
    assert [r.key for r in refs] == [refs[0].key] * 8 + [refs[8].key] * 2 and refs[0].key != refs[8].key
    assert [r.offset for r in refs] == [i * 2 * 256 * 256 * 4 for i in (*range(8), 0, 1)]
    for original, decoded in zip(tiles, decode_tiles(packed, store=store)):
        assert decoded.tile_id == original.tile_id
        assert decoded.pixels.tobytes() == original.pixels.inline_data
