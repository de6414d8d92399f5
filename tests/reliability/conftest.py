"""Fixtures of the reliability tests: certificates made here, Prefect, and real local nights to break.

Every night is a real rclone S3 server plus the ingest service and one tile-statistics service per
simulated survey, started as processes through their commands (as the demo starts them). A test that
needs a night gets one of its own (``local_night``), free to break it; nothing here mocks a project component.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nightshift.orchestration.config import NightConfig, ServiceEndpoint
from nightshift.orchestration.launcher import LocalNight, ingest_command, science_service_commands, tilestats_command
from nightshift.orchestration.simulate import SIMULATED_SURVEYS


@dataclasses.dataclass(frozen=True)
class Certificates:
    """A throw-away CA and a server certificate it signed for 127.0.0.1 and localhost (PEM files)."""

    ca: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A self-made CA and a server certificate for 127.0.0.1, valid for a day."""
    directory = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("nightshift test CA")).issuer_name(_name("nightshift test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_cert.subject)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = Certificates(ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server-key.pem")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return files


@pytest.fixture
def local_night(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalNight]:
    """A night of this test's own (S3, ingest, tile statistics per survey), the environment pointing at its store."""
    with LocalNight(tmp_path / "night") as night:
        store = night.start_s3()
        for name, value in store.config.to_env().items():
            monkeypatch.setenv(name, value)
        commands = [ingest_command(), *(tilestats_command(f"tilestats-{s.name}", s.band_names) for s in SIMULATED_SURVEYS)]
        failed = night.start_services(commands, timeout_s=120)
        assert not failed, failed
        yield night


def night_config(night: LocalNight, *, batch_tiles: int = 4, timeout_s: float = 30) -> NightConfig:
    """The configuration of a night on the services running now in ``night``."""
    services = tuple(ServiceEndpoint(name=name, target=s.target, timeout_s=timeout_s, batch_tiles=batch_tiles)
                     for name, s in sorted(night.services.items()) if name != "ingest")
    return NightConfig(surveys=SIMULATED_SURVEYS, ingest_target=night.services["ingest"].target, services=services)


@pytest.fixture
def config_of() -> Callable[..., NightConfig]:
    """:func:`night_config`: the configuration of a night on its services running now (targets change on restart)."""
    return night_config


@pytest.fixture(scope="session")
def science_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNight]:
    """Every installed science service (``nightshift-<task> serve``) on one S3 server, as processes, for the session.

    Fails if any is not installed: the reliability suite is run where the whole project is.
    """
    with LocalNight(tmp_path_factory.mktemp("science")) as night:
        night.start_s3()
        commands, missing = science_service_commands()
        assert not missing, missing
        failed = night.start_services(commands, timeout_s=300)
        assert not failed, failed
        yield night
