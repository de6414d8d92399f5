"""What a night processes and where the services are: the typed parameters of the nightly flow.

A :class:`NightConfig` is a flow parameter (Prefect validates it and shows its schema in the UI). It
names the surveys whose files may arrive in the raw area, how each is tiled, the ingest service and
the science services. The object store is not part of it: every process reads ``NIGHTSHIFT_S3_*``
(credentials never travel as flow parameters).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

__all__ = [
    "BandConfig",
    "FitsTiling",
    "HealpixTiling",
    "SurveyConfig",
    "ServiceEndpoint",
    "NightConfig",
    "check_night",
    "DEFAULT_NIGHTLY_CRON",
]

DEFAULT_NIGHTLY_CRON = "0 20 * * *"
"""When the nightly deployment runs: every evening at 20:00 in its time zone (after the day's transfers)."""

_NIGHT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # names become object-key segments


def check_night(night: str) -> str:
    """``night`` if it is a date ``YYYY-MM-DD``; raises ValueError otherwise."""
    if not _NIGHT.match(night):
        raise ValueError(f"night={night!r}: expected a date YYYY-MM-DD")
    return night


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r}: expected letters, digits, '.', '_' or '-' (it becomes part of object keys)")
    return value


Name = Annotated[str, AfterValidator(_check_name)]


class BandConfig(BaseModel, frozen=True):
    """One band of a survey: its name as the services expect it, wavelength in um and pixel unit."""

    name: Name
    wavelength_um: float = 0.0
    unit: str = ""


class FitsTiling(BaseModel, frozen=True):
    """Flat FITS fields, one file per band, cut into square windows (see the ingest contract's ``FlatTiling``)."""

    kind: Literal["fits"] = "fits"
    window_px: tuple[int, ...] = (256,)
    overlap_fraction: float = 0.25
    output_px: int = 0


class HealpixTiling(BaseModel, frozen=True):
    """HEALPix maps, one file per band, cut into gnomonic patches (see the ingest contract's ``HealpixTiling``)."""

    kind: Literal["healpix"] = "healpix"
    patch_px: int = 64
    pixel_scale_arcmin: float = 1.7
    overlap_fraction: float = 0.0
    validation_cells: tuple[int, ...] = ()
    test_cells: tuple[int, ...] = ()
    frame: Literal["galactic", "icrs"] = "galactic"


class SurveyConfig(BaseModel, frozen=True):
    """A survey whose files arrive as ``raw/<night>/<survey>/<field>/<band>.fits``.

    Parameters
    ----------
    name : str
        Survey name, the first path segment under the night.
    bands : tuple of BandConfig
        The bands, in the order tiles carry them; every field needs one file per band.
    tiling : FitsTiling or HealpixTiling
        How the ingest service cuts the field into tiles.
    """

    name: Name
    bands: tuple[BandConfig, ...]
    tiling: Annotated[FitsTiling | HealpixTiling, Field(discriminator="kind")]

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)


class ServiceEndpoint(BaseModel, frozen=True):
    """A science service (``TaskService``) and how the night calls it.

    Parameters
    ----------
    name : str
        How logs and the report name this endpoint (several may serve one task, e.g. per band set).
    target : str
        ``host:port`` of the gRPC server, ``dns:///name:port`` (every address of the name: a headless Service's
        pods) or ``ipv4:host:port,host:port``; calls go round-robin over the replicas.
    max_concurrent_calls : int
        Infer calls in flight to each replica of this service at once (its GPU queue stays short and deadlines
        hold); the night multiplies it by the addresses ``target`` resolves to.
    batch_tiles : int
        Tiles per Infer call; 0 takes the service's preferred batch size from Describe.
    timeout_s : float
        Deadline of every call, in seconds.
    duplicate_radius_arcsec : float
        Detections of one label closer than this on the sky (from overlapping tiles) are one object.
    crossmatch_radius_arcsec : float
        A detection with an object of the task's reference catalogues (``reference/<task>/`` in the
        store) within this radius is known; 0 skips the cross-match.
    """

    name: Name
    target: str
    max_concurrent_calls: int = Field(default=2, ge=1)
    batch_tiles: int = Field(default=0, ge=0)
    timeout_s: float = Field(default=120.0, gt=0)
    duplicate_radius_arcsec: float = Field(default=30.0, ge=0)
    crossmatch_radius_arcsec: float = Field(default=0.0, ge=0)


class NightConfig(BaseModel, frozen=True):
    """Everything the nightly flow needs besides the night and the object store.

    Parameters
    ----------
    surveys : tuple of SurveyConfig
        Surveys expected in the raw area; files of other surveys are quarantined.
    ingest_target : str
        ``host:port`` of the ingest service.
    services : tuple of ServiceEndpoint
        Science services to fan the tiles out to; each gets the tiles its Describe says it accepts.
    skipped_services : dict of str to str
        Services known but not deployed tonight, with the reason: listed in the report.
    tiles_per_task : int
        Tiles one Prefect task sends to one service (in several Infer calls).
    ingest_timeout_s : float
        Deadline of one ingest call, in seconds.
    """

    surveys: tuple[SurveyConfig, ...]
    ingest_target: str
    services: tuple[ServiceEndpoint, ...] = ()
    skipped_services: dict[str, str] = Field(default_factory=dict)
    tiles_per_task: int = Field(default=256, ge=1)
    ingest_timeout_s: float = Field(default=600.0, gt=0)

    def survey(self, name: str) -> SurveyConfig | None:
        """The survey called ``name``, or None."""
        return next((s for s in self.surveys if s.name == name), None)
