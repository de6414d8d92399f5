"""Nightshift's ingest service: FITS fields and HEALPix sky maps into image tiles in object storage.

``ingest_fits`` and ``ingest_healpix`` do the work (one I/O layer over the pure tiling modules),
``IngestServable`` serves them as the contract's ``IngestService``, ``list_tiles`` pages through
the tiles of an ingest run.
"""

from nightshift.ingest.config import (
    FitsBandSource,
    FitsIngest,
    FlatTiling,
    HealpixBandSource,
    HealpixIngest,
    HealpixTiling,
)
from nightshift.ingest.pipeline import ingest_fits, ingest_healpix
from nightshift.ingest.servicer import IngestServable
from nightshift.ingest.tile_index import list_tiles

__all__ = [
    "FitsBandSource",
    "FitsIngest",
    "FlatTiling",
    "HealpixBandSource",
    "HealpixIngest",
    "HealpixTiling",
    "IngestServable",
    "ingest_fits",
    "ingest_healpix",
    "list_tiles",
]
