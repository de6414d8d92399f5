"""``nightshift-ingest``: serve the ingest service, ingest files from the command line, list tiles, benchmark.

The object store is configured by ``NIGHTSHIFT_S3_*`` (see ``nightshift.core.store.StoreConfig``).
Sources are local paths or ``s3://bucket/key`` objects; ``[HDU]`` after a FITS source picks its HDU
(name or 0-based index), ``[N]`` after a HEALPix source its 0-based column.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from nightshift.core.command import CommandLine
from nightshift.core.errors import InvalidInput
from nightshift.core.logs import configure_logging
from nightshift.core.server import ServerOptions, run
from nightshift.core.store import ObjectStore
from nightshift.ingest import bench
from nightshift.ingest.config import (
    FitsBandSource,
    FitsIngest,
    FlatTiling,
    HealpixBandSource,
    HealpixIngest,
    HealpixTiling,
    IngestLimits,
    Source,
)
from nightshift.ingest.pipeline import ProgressCallback, ingest_fits, ingest_healpix
from nightshift.ingest.servicer import IngestServable
from nightshift.ingest.tile_index import list_tiles
from nightshift.v1 import ingest_service_pb2, tile_pb2

__all__ = ["main", "build_parser"]

_BAND = re.compile(r"^(?P<name>[^=]+)=(?P<source>.+?)(\[(?P<selector>[^\]]*)\])?$")
_FRAMES = {"galactic": tile_pb2.SKY_FRAME_GALACTIC, "icrs": tile_pb2.SKY_FRAME_ICRS, "map": tile_pb2.SKY_FRAME_UNSPECIFIED}
_DEFAULT_HEALPIX = HealpixTiling()
_DEFAULT_FLAT = FlatTiling()


def _source(text: str) -> Source:
    """``s3://bucket/key`` as a store reference, anything else as a local path."""
    if text.startswith("s3://"):
        bucket, _, key = text.removeprefix("s3://").partition("/")
        return tile_pb2.ObjectRef(bucket=bucket, key=key)
    return Path(text)


def _band_specs(specs: Sequence[str], units: Sequence[str], wavelengths: Sequence[str]) -> list[tuple[tile_pb2.Band, Source, str]]:
    """Parse ``NAME=SOURCE[SELECTOR]`` band options with their ``NAME=VALUE`` units and wavelengths."""
    def by_name(option: str, pairs: Sequence[str]) -> dict[str, str]:
        parsed = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        if len(parsed) != len(pairs):
            raise InvalidInput(f"{option}: expected NAME=VALUE, got {list(pairs)}")
        return parsed

    unit_of, wavelength_of = by_name("--unit", units), by_name("--wavelength-um", wavelengths)
    bands = []
    for spec in specs:
        match = _BAND.match(spec)
        if match is None:
            raise InvalidInput(f"--band {spec!r}: expected NAME=SOURCE or NAME=SOURCE[SELECTOR]")
        name = match["name"]
        band = tile_pb2.Band(name=name, unit=unit_of.get(name, ""), wavelength_um=float(wavelength_of.get(name, 0.0)))
        bands.append((band, _source(match["source"]), match["selector"] or ""))
    return bands


def _progress_bar(description: str) -> tuple[ProgressCallback, tqdm]:
    bar = tqdm(desc=description, unit="tile", file=sys.stderr, dynamic_ncols=True)

    def update(event: ingest_service_pb2.IngestProgress) -> None:
        bar.total = event.tiles_total
        bar.n = event.tiles_done
        bar.set_postfix_str(event.message, refresh=True)

    return update, bar


def _store() -> ObjectStore:
    """The store ``NIGHTSHIFT_S3_*`` configures, its bucket created if needed."""
    try:
        store = ObjectStore.from_env()
    except ValueError as exc:  # not configured: the user's to fix, like any bad input
        raise InvalidInput(str(exc)) from None
    store.ensure_bucket()
    return store


def _print_summary(summary: ingest_service_pb2.IngestSummary) -> None:
    print(json.dumps({
        "run_id": summary.run_id, "tile_count": summary.tile_count, "bytes_written": summary.bytes_written,
        "shards": len(summary.shard_keys), "index_key": summary.index_key,
    }))


def _ingest_fits(args: argparse.Namespace) -> None:
    bands = _band_specs(args.band, args.unit, args.wavelength_um)
    request = FitsIngest(
        survey=args.survey, field=args.field, run_id=args.run_id, reference_band=args.reference_band,
        bands=tuple(FitsBandSource(band=band, source=source, hdu=selector) for band, source, selector in bands),
        tiling=FlatTiling(window_px=tuple(args.window_px), overlap_fraction=args.overlap, output_px=args.output_px),
    )
    progress, bar = _progress_bar(f"{args.survey}/{args.field}")
    with bar:
        summary = ingest_fits(_store(), request, limits=IngestLimits.from_env(), progress=progress)
    _print_summary(summary)


def _ingest_healpix(args: argparse.Namespace) -> None:
    bands = _band_specs(args.band, args.unit, args.wavelength_um)
    request = HealpixIngest(
        survey=args.survey, field=args.field, run_id=args.run_id,
        bands=tuple(HealpixBandSource(band=band, source=source, field_index=int(selector or 0))
                    for band, source, selector in bands),
        tiling=HealpixTiling(
            patch_px=args.patch_px, pixel_scale_arcmin=args.pixel_scale_arcmin, overlap_fraction=args.overlap,
            validation_cells=tuple(args.validation_cells), test_cells=tuple(args.test_cells), frame=_FRAMES[args.frame],
        ),
    )
    progress, bar = _progress_bar(f"{args.survey}/{args.field}")
    with bar:
        summary = ingest_healpix(_store(), request, limits=IngestLimits.from_env(), progress=progress)
    _print_summary(summary)


def _list(args: argparse.Namespace) -> None:
    store, token = _store(), ""
    while True:
        page = list_tiles(store, args.run_id, survey=args.survey, split=args.split, page_size=args.page_size, page_token=token)
        for tile in page.tiles:
            ref = tile.pixels.object_ref
            print(json.dumps({
                "tile_id": tile.tile_id, "survey": tile.survey, "field": tile.field, "bands": [b.name for b in tile.bands],
                "shape": list(tile.pixels.shape), "center": [tile.center.lon_deg, tile.center.lat_deg],
                "frame": tile_pb2.SkyFrame.Name(tile.center.frame), "labels": dict(tile.labels),
                "object": f"s3://{ref.bucket}/{ref.key}", "offset": ref.offset, "size_bytes": ref.size_bytes,
            }))
        token = page.next_page_token
        if not token:
            return


def _serve(args: argparse.Namespace) -> None:
    configure_logging("ingest")
    run(IngestServable(_store()), options=ServerOptions.from_env(host=args.host, port=args.port))


def _add_band_options(parser: argparse.ArgumentParser, selector: str) -> None:
    parser.add_argument("--survey", required=True, help="survey name, e.g. glimpse or planck")
    parser.add_argument("--field", required=True, help="field (mosaic or map) name")
    parser.add_argument("--band", action="append", required=True, metavar=f"NAME=SOURCE[{selector}]",
                        help=f"a band: its name, its file (local path or s3://bucket/key) and optionally its {selector}; repeat per band")
    parser.add_argument("--unit", action="append", default=[], metavar="NAME=UNIT", help="unit of a band's pixels")
    parser.add_argument("--wavelength-um", action="append", default=[], metavar="NAME=UM",
                        help="effective wavelength of a band in micrometres")
    parser.add_argument("--run-id", default=time.strftime("%Y-%m-%d", time.gmtime()),
                        help="ingest run the tiles belong to (default: today's UTC date)")


def build_parser() -> CommandLine:
    """The command line, for ``main`` and for documentation."""
    cli = CommandLine("nightshift-ingest", __doc__, distribution="nightshift-ingest")

    serve = cli.command("serve", _serve, "serve IngestService over gRPC until SIGTERM")
    serve.add_argument("--host", default=None, help="address to bind (default: NIGHTSHIFT_GRPC_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: NIGHTSHIFT_GRPC_PORT or 50051; 0: any free)")

    ingest = cli.command("ingest", None, "ingest a FITS field or a HEALPix map into the object store")
    kinds = ingest.add_subparsers(dest="kind", required=True)
    fits = kinds.add_parser("fits", help="tile a FITS field (one file per band) into square windows")
    _add_band_options(fits, "HDU")
    fits.add_argument("--reference-band", default="", help="band whose pixel grid the tiles use (default: the first)")
    fits.add_argument("--window-px", type=int, nargs="+", default=list(_DEFAULT_FLAT.window_px),
                      help="window sizes in pixels; several give a multi-scale tiling (default: %(default)s)")
    fits.add_argument("--overlap", type=float, default=_DEFAULT_FLAT.overlap_fraction,
                      help="overlap of neighbouring windows as a fraction of their size (default: %(default)s)")
    fits.add_argument("--output-px", type=int, default=_DEFAULT_FLAT.output_px,
                      help="resample every window to this size in pixels (default: 0, keep the window size)")
    fits.set_defaults(run=_ingest_fits)

    healpix = kinds.add_parser("healpix", help="cut a HEALPix map into gnomonic patches")
    _add_band_options(healpix, "COLUMN")
    healpix.add_argument("--patch-px", type=int, default=_DEFAULT_HEALPIX.patch_px, help="patch size in pixels (default: %(default)s)")
    healpix.add_argument("--pixel-scale-arcmin", type=float, default=_DEFAULT_HEALPIX.pixel_scale_arcmin,
                         help="patch pixel scale in arcminutes (default: %(default)s)")
    healpix.add_argument("--overlap", type=float, default=_DEFAULT_HEALPIX.overlap_fraction,
                         help="least overlap of neighbouring patches as a fraction of their size (default: %(default)s)")
    healpix.add_argument("--validation-cells", type=int, nargs="*", default=list(_DEFAULT_HEALPIX.validation_cells),
                         help="nside=2 NESTED base cells labelled validation (default: %(default)s)")
    healpix.add_argument("--test-cells", type=int, nargs="*", default=list(_DEFAULT_HEALPIX.test_cells),
                         help="nside=2 NESTED base cells labelled test (default: %(default)s)")
    healpix.add_argument("--frame", choices=sorted(_FRAMES), default="map",
                         help="frame of the map (default: the map's COORDSYS)")
    healpix.set_defaults(run=_ingest_healpix)

    listing = cli.command("list", _list, "list the tiles of an ingest run, one JSON line per tile")
    listing.add_argument("--run-id", required=True, help="ingest run")
    listing.add_argument("--survey", default="", help="only this survey")
    listing.add_argument("--split", default="", help="only this split label (train, validation, test)")
    listing.add_argument("--page-size", type=int, default=0, help="tiles read per page (default: the service's)")

    benchmark = cli.command("bench", bench.main, "measure patch and tiling throughput; ends with one JSON line")
    bench.add_arguments(benchmark)
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad input or configuration)."""
    return build_parser().main(argv)


if __name__ == "__main__":
    sys.exit(main())
