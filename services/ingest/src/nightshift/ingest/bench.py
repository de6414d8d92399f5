"""``nightshift-ingest bench``: patch and tiling throughput, measured in one run on this machine.

HEALPix: the vectorised patch extraction over the whole sphere against a per-patch
``healpy.gnomview`` loop on a sample of the same patches (same map, centres and scale; their
pixels are compared too), and the whole ``ingest_healpix`` (map file to shards and index in a local
S3 server). FITS: ``ingest_fits`` of a multi-band field against plain reading of the same files
with astropy, both in MB/s of FITS input. Peak memory is the process's maximum resident set size.
Ends with one JSON line, also written to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import healpy as hp
import matplotlib
import numpy as np
from astropy.io import fits

from nightshift.core.s3server import start_local_s3
from nightshift.core.store import ObjectStore
from nightshift.ingest.config import FitsBandSource, FitsIngest, FlatTiling, HealpixBandSource, HealpixIngest, HealpixTiling
from nightshift.ingest.fits_tiling import align_bands, cut_windows, plan_windows, read_fits_image
from nightshift.ingest.healpix_patches import HealpixMaps, patch_grid, sample_patches
from nightshift.ingest.pipeline import ingest_fits, ingest_healpix
from nightshift.ingest.synthetic import field_image, field_wcs, healpix_maps, write_field, write_healpix
from nightshift.v1 import tile_pb2

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options (defaults: the cluster seed's 6-band nside=2048 sky)."""
    parser.add_argument("--nside", type=int, default=2048, help="HEALPix nside of the map (default: %(default)s)")
    parser.add_argument("--fields", type=int, default=6, help="bands (columns) of the map (default: %(default)s)")
    parser.add_argument("--patch-px", type=int, default=64, help="patch size in pixels (default: %(default)s)")
    parser.add_argument("--pixel-scale-arcmin", type=float, default=1.7, help="patch pixel scale (default: %(default)s)")
    parser.add_argument("--gnomview-patches", type=int, default=100,
                        help="patches the gnomview loop projects (each band separately) (default: %(default)s)")
    parser.add_argument("--image-px", type=int, default=4096, help="side of the FITS field in pixels (default: %(default)s)")
    parser.add_argument("--image-bands", type=int, default=3, help="bands (files) of the FITS field (default: %(default)s)")
    parser.add_argument("--window-px", type=int, default=256, help="FITS window size (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("bench-ingest.json"), help="JSON file of the figures")


def _rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _bench_patches(args: argparse.Namespace, workdir: Path, store: ObjectStore) -> dict[str, float]:
    tiling = HealpixTiling(patch_px=args.patch_px, pixel_scale_arcmin=args.pixel_scale_arcmin)
    values = healpix_maps(args.nside, args.fields, seed=1)
    maps = HealpixMaps(values=values, nside=args.nside, nested=False)
    grid = patch_grid(tiling)
    started = time.perf_counter()
    for start in range(0, len(grid), 256):
        sample_patches(maps, grid.lon_deg[start:start + 256], grid.lat_deg[start:start + 256], tiling)
    vectorised_s = time.perf_counter() - started

    chosen = np.linspace(0, len(grid) - 1, min(args.gnomview_patches, len(grid))).astype(int)
    ours = sample_patches(maps, grid.lon_deg[chosen], grid.lat_deg[chosen], tiling)
    agree = 0
    started = time.perf_counter()
    for patch, index in zip(ours, chosen):
        for band, expected in zip(values, patch):
            projected = hp.gnomview(band, rot=(grid.lon_deg[index], grid.lat_deg[index], 0.0), xsize=args.patch_px,
                                    reso=args.pixel_scale_arcmin, return_projected_map=True, no_plot=True)
            agree += int(np.count_nonzero(np.asarray(projected) == expected))
    gnomview_s = time.perf_counter() - started

    path = write_healpix(workdir / "sky.fits", values)
    del values, maps
    request = HealpixIngest(
        survey="bench", field=f"nside{args.nside}", run_id="bench",
        bands=tuple(HealpixBandSource(band=tile_pb2.Band(name=f"band{i}"), source=path, field_index=i) for i in range(args.fields)),
        tiling=tiling,
    )
    started = time.perf_counter()
    summary = ingest_healpix(store, request)
    ingest_s = time.perf_counter() - started

    patches_per_s = _rate(len(grid), vectorised_s)
    gnomview_per_s = _rate(len(chosen), gnomview_s)
    return {
        "nside": args.nside, "fields": args.fields, "patch_px": args.patch_px, "patches": len(grid),
        "patches_per_s": round(patches_per_s, 1),
        "gnomview_patches_per_s": round(gnomview_per_s, 2),
        "speedup_vs_gnomview": round(patches_per_s / gnomview_per_s, 1),
        "gnomview_pixel_agreement": round(agree / ours.size, 6),
        "healpix_ingest_s": round(ingest_s, 2),
        "healpix_ingest_patches_per_s": round(_rate(summary.tile_count, ingest_s), 1),
        "healpix_shards": len(summary.shard_keys),
    }


def _bench_fits(args: argparse.Namespace, workdir: Path, store: ObjectStore) -> dict[str, float]:
    shape = (args.image_px, args.image_px)
    wcs = field_wcs(shape)
    paths = [write_field(workdir / f"field{i}.fits", field_image(shape, seed=i), wcs) for i in range(args.image_bands)]
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    started = time.perf_counter()
    for path in paths:
        fits.getdata(path, memmap=False)  # read, not mapped: a memory map defers the reading being measured
    read_s = time.perf_counter() - started
    request = FitsIngest(
        survey="bench", field="field", run_id="bench",
        bands=tuple(FitsBandSource(band=tile_pb2.Band(name=f"band{i}"), source=p) for i, p in enumerate(paths)),
        tiling=FlatTiling(window_px=(args.window_px,), overlap_fraction=0.25),
    )
    started = time.perf_counter()
    summary = ingest_fits(store, request)
    tiling_s = time.perf_counter() - started
    started = time.perf_counter()
    # the same reading, alignment and cutting with nothing stored: the rate the store's side is measured against
    images = [read_fits_image(p, what=p.name) for p in paths]
    cube, wcs = align_bands(images, 0)
    for flat in cut_windows(cube, wcs, plan_windows(cube.shape[1:], request.tiling, what="bench")):
        flat.pixels.tobytes()
    cutting_s = time.perf_counter() - started
    read_mb_s, tiling_mb_s, cutting_mb_s = _rate(megabytes, read_s), _rate(megabytes, tiling_s), _rate(megabytes, cutting_s)
    return {
        "fits_mb": round(megabytes, 1), "fits_tiles": summary.tile_count,
        "fits_read_mb_per_s": round(read_mb_s, 1), "fits_tiling_mb_per_s": round(tiling_mb_s, 1),
        "fits_tiling_over_read": round(tiling_mb_s / read_mb_s, 3),
        "fits_cutting_mb_per_s": round(cutting_mb_s, 1), "fits_tiling_over_cutting": round(tiling_mb_s / cutting_mb_s, 3),
    }


def main(args: argparse.Namespace) -> None:
    """Run both benchmarks, print them, write ``args.output`` and end with the figures as one JSON line."""
    matplotlib.use("Agg")  # gnomview's projector lives in healpy's plotting module
    with tempfile.TemporaryDirectory(prefix="nightshift-ingest-bench-") as directory, start_local_s3("rclone") as s3:
        store = s3.store()
        workdir = Path(directory)
        figures = {**_bench_patches(args, workdir, store), **_bench_fits(args, workdir, store)}
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(f"HEALPix nside={figures['nside']} x {figures['fields']} bands, {figures['patches']} patches of "
          f"{args.patch_px} px at {args.pixel_scale_arcmin}':")
    print(f"  vectorised {figures['patches_per_s']} patches/s, gnomview loop {figures['gnomview_patches_per_s']} "
          f"patches/s: {figures['speedup_vs_gnomview']}x (pixels equal to gnomview's: {figures['gnomview_pixel_agreement']:.2%})")
    print(f"  whole ingest (file to shards and index in S3): {figures['healpix_ingest_s']} s, "
          f"{figures['healpix_ingest_patches_per_s']} patches/s")
    print(f"FITS {args.image_bands} x {args.image_px}^2 px ({figures['fits_mb']} MB): tiling to S3 {figures['fits_tiling_mb_per_s']} MB/s, "
          f"cutting with no store {figures['fits_cutting_mb_per_s']} MB/s ({figures['fits_tiling_over_cutting']}x), "
          f"reading {figures['fits_read_mb_per_s']} MB/s ({figures['fits_tiling_over_read']}x)")
    print(f"peak memory {figures['peak_rss_mb']} MB")
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
