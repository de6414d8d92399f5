"""The tile index and paged listing against the real local S3 server."""

from __future__ import annotations

import pytest

from nightshift.core.errors import InvalidInput
from nightshift.core.store import ObjectStore
from nightshift.ingest.tile_index import index_key, list_tiles, read_index, write_index
from nightshift.v1 import tile_pb2


def tiles(prefix: str, count: int, *, survey: str = "sv") -> list[tile_pb2.ImageTile]:
    splits = ("train", "validation", "test")
    return [tile_pb2.ImageTile(tile_id=f"{prefix}{n:03d}", survey=survey, labels={"split": splits[n % 3], "n": str(n)})
            for n in range(count)]


def write(store: ObjectStore, run_id: str, survey: str, field: str, content: list[tile_pb2.ImageTile]) -> str:
    key = index_key(store, run_id=run_id, survey=survey, field=field, input_id=f"in-{field}")
    write_index(store, key, content)
    return key


def all_pages(store: ObjectStore, run_id: str, **kwargs: object) -> list[list[str]]:
    pages, token = [], ""
    while True:
        page = list_tiles(store, run_id, page_token=token, **kwargs)  # type: ignore[arg-type]
        pages.append([t.tile_id for t in page.tiles])
        token = page.next_page_token
        if not token:
            return pages


def test_index_round_trip_and_rewrite_of_the_same_index_writes_nothing(store: ObjectStore) -> None:
    content = tiles("a", 7)
    key = index_key(store, run_id="night", survey="sv", field="f", input_id="abc")
    assert key.endswith("ingest/runs/night/index/sv/f/abc.pb")
    written = write_index(store, key, content)
    assert written == store.size_of(key) > 0
    assert read_index(store, key) == content
    assert write_index(store, key, content) == 0
    assert write_index(store, key, content[:3]) > 0
    assert read_index(store, key) == content[:3]


def test_pages_walk_every_index_of_the_run_in_order(store: ObjectStore) -> None:
    write(store, "night", "sv", "f1", tiles("a", 5))
    write(store, "night", "sv", "f2", tiles("b", 4))
    write(store, "night2", "sv", "f1", tiles("z", 3))  # another run, and a run id that extends this one's
    pages = all_pages(store, "night", page_size=3)
    assert pages == [["a000", "a001", "a002"], ["a003", "a004", "b000"], ["b001", "b002", "b003"]]
    assert all_pages(store, "night") == [[*(f"a{n:03d}" for n in range(5)), *(f"b{n:03d}" for n in range(4))]]


def test_filters_by_survey_and_split(store: ObjectStore) -> None:
    write(store, "night", "sv", "f1", tiles("a", 6))
    write(store, "night", "other", "f1", tiles("o", 3, survey="other"))
    assert all_pages(store, "night", survey="other") == [["o000", "o001", "o002"]]
    # indexes in key order: survey "other" before "sv"
    assert all_pages(store, "night", split="validation", page_size=1) == [["o001"], ["a001"], ["a004"]]
    assert all_pages(store, "night", survey="sv", split="test") == [["a002", "a005"]]


def test_an_unknown_run_is_an_empty_page(store: ObjectStore) -> None:
    page = list_tiles(store, "never")
    assert list(page.tiles) == [] and page.next_page_token == ""


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"page_token": "garbage"}, "page_token 'garbage' was not issued for this listing"),
        ({"page_size": 10**6}, "page_size=1000000: at most 10000"),
        ({"survey": "../x"}, "survey='../x'"),
    ],
)
def test_bad_listing_requests_are_invalid_input(store: ObjectStore, kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        list_tiles(store, "night", **kwargs)


def test_a_token_of_another_run_is_refused(store: ObjectStore) -> None:
    write(store, "night", "sv", "f1", tiles("a", 3))
    token = list_tiles(store, "night", page_size=1).next_page_token
    with pytest.raises(InvalidInput, match="was not issued for this listing"):
        list_tiles(store, "other-night", page_token=token)
