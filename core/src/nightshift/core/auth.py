"""Who may call a service: bearer tokens signed with the deployment's secret, and the roles they carry.

A token is a JWT (RFC 7519) signed with HMAC-SHA256 (``HS256``) under the secret every service of
a deployment shares (``NIGHTSHIFT_AUTH_SECRET``, or the file ``NIGHTSHIFT_AUTH_SECRET_FILE`` names);
its claims are ``sub`` (who), ``roles``, ``iat`` and ``exp`` (Unix seconds). A client sends it as
``authorization: Bearer <token>`` (``NIGHTSHIFT_AUTH_TOKEN``; :func:`nightshift.core.client.open_channel`).
The server runtime checks it in its one interceptor, before the call is admitted:

- ``infer``: ``Describe``, ``Infer``, ``InferStream``, ``Evaluate``, ``ListTiles`` (what the nightly flow calls);
- ``ingest``: ``IngestFits``, ``IngestHealpix`` (they write tiles into the store);
- ``admin``: every method, ``Train`` only with it (it registers a model and moves ``LATEST``).

No token, or one that is malformed, badly signed or expired, is UNAUTHENTICATED; a valid token
without the role the method needs is PERMISSION_DENIED. Health and reflection need no token (probes
and load balancers call them). Tokens travel in the clear on a plaintext channel: serve TLS
(``NIGHTSHIFT_GRPC_TLS_CERT``/``_KEY``) wherever the network is not trusted.

A process calling several services with different needs (the nightly flow) holds one token per role,
``NIGHTSHIFT_AUTH_TOKEN_INFER``, ``_INGEST`` and ``_ADMIN``; :func:`token_for` picks the one a call
needs, falling back to ``NIGHTSHIFT_AUTH_TOKEN``. ``nightshift night`` makes a secret per run in a 0600
file (:func:`write_secret_file`), starts every service with it and gives its flow an ``infer`` token and an
``ingest`` token only.

Without a secret a service serves anonymously on loopback with a warning, and refuses to start on any
other address unless ``NIGHTSHIFT_AUTH=off`` says that anonymous callers are meant
(:func:`auth_mode`; ``NIGHTSHIFT_AUTH=on`` requires a secret on loopback too).

>>> secret = make_secret()
>>> token = issue_token(secret, subject="nightly-flow", roles=["infer", "ingest"])
>>> verify_token(secret, token).roles
('infer', 'ingest')
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from nightshift.core.errors import PermissionDenied, Unauthenticated

__all__ = [
    "ROLES",
    "AUTH_SECRET_ENV",
    "AUTH_SECRET_FILE_ENV",
    "AUTH_TOKEN_ENV",
    "Claims",
    "make_secret",
    "secret_from_env",
    "issue_token",
    "verify_token",
    "required_role",
    "authorize",
    "AUTH_MODE_ENV",
    "auth_mode",
    "bearer_metadata",
    "role_token_env",
    "token_for",
    "write_secret_file",
]

ROLES = ("infer", "ingest", "admin")
AUTH_SECRET_ENV = "NIGHTSHIFT_AUTH_SECRET"
AUTH_SECRET_FILE_ENV = "NIGHTSHIFT_AUTH_SECRET_FILE"
AUTH_TOKEN_ENV = "NIGHTSHIFT_AUTH_TOKEN"
AUTH_MODE_ENV = "NIGHTSHIFT_AUTH"
_MIN_SECRET_BYTES = 32  # HS256 wants a key at least as long as its hash
_HEADER = {"alg": "HS256", "typ": "JWT"}
_INGEST_WRITES = frozenset({"/nightshift.v1.IngestService/IngestFits", "/nightshift.v1.IngestService/IngestHealpix"})
_ADMIN_ONLY = frozenset({"/nightshift.v1.TaskService/Train"})


@dataclasses.dataclass(frozen=True)
class Claims:
    """What a verified token says: who, with which roles, until when (Unix seconds)."""

    subject: str
    roles: tuple[str, ...]
    expires: float


def make_secret() -> str:
    """A new random signing secret (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def secret_from_env(environ: Mapping[str, str] = os.environ) -> bytes | None:
    """The signing secret ``NIGHTSHIFT_AUTH_SECRET`` holds, or the file ``NIGHTSHIFT_AUTH_SECRET_FILE`` names; None if neither.

    Raises
    ------
    ValueError
        The secret is shorter than 32 bytes.
    """
    if environ.get(AUTH_SECRET_FILE_ENV):
        secret = Path(environ[AUTH_SECRET_FILE_ENV]).read_bytes().strip()
    elif environ.get(AUTH_SECRET_ENV):
        secret = environ[AUTH_SECRET_ENV].encode()
    else:
        return None
    return _checked_secret(secret)


def write_secret_file(path: Path, secret: str | None = None) -> Path:
    """Write ``secret`` (default: a new one) to ``path``, readable by its owner only (0600, in a 0700 directory made
    when missing); an existing file is replaced. Returns ``path``, for ``NIGHTSHIFT_AUTH_SECRET_FILE``."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(_checked_secret(secret or make_secret()).decode())
    return path


def role_token_env(role: str) -> str:
    """The variable holding a caller's token for ``role``: ``NIGHTSHIFT_AUTH_TOKEN_INFER`` etc."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: expected one of {list(ROLES)}")
    return f"{AUTH_TOKEN_ENV}_{role.upper()}"


def token_for(role: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The token a caller sends to calls needing ``role``: ``NIGHTSHIFT_AUTH_TOKEN_<ROLE>``, else
    ``NIGHTSHIFT_AUTH_TOKEN``, else None (anonymous)."""
    return environ.get(role_token_env(role)) or environ.get(AUTH_TOKEN_ENV) or None


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata that carries ``token`` (``authorization: Bearer <token>``); empty without one."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def auth_mode(environ: Mapping[str, str] = os.environ) -> str:
    """``NIGHTSHIFT_AUTH``: "" (unset: a service without a secret serves anonymously on loopback only, with a
    warning), "on" (a secret is required everywhere) or "off" (anonymous callers accepted on any address).

    Raises
    ------
    ValueError
        ``NIGHTSHIFT_AUTH`` is set to anything else.
    """
    mode = environ.get(AUTH_MODE_ENV, "").strip().lower()
    if mode not in ("", "on", "off"):
        raise ValueError(f"{AUTH_MODE_ENV}={environ[AUTH_MODE_ENV]!r}: expected 'on' or 'off'")
    return mode


def _checked_secret(secret: bytes | str) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if len(key) < _MIN_SECRET_BYTES:
        raise ValueError(f"the authentication secret has {len(key)} bytes, at least {_MIN_SECRET_BYTES} are needed "
                         "(nightshift-core new-secret makes one)")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, signed: str) -> bytes:
    return hmac.new(key, signed.encode(), hashlib.sha256).digest()


def issue_token(secret: bytes | str, *, subject: str, roles: Sequence[str], lifetime_s: float = 86400.0) -> str:
    """A token for ``subject`` carrying ``roles``, valid for ``lifetime_s`` seconds from now.

    Raises
    ------
    ValueError
        A role not in :data:`ROLES`, no role, or a secret shorter than 32 bytes.
    """
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise ValueError(f"roles {list(roles)}: expected one or more of {list(ROLES)}")
    now = int(time.time())
    claims = {"sub": subject, "roles": sorted(set(roles)), "iat": now, "exp": now + int(lifetime_s)}
    signed = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(claims, sort_keys=True).encode())}"
    return f"{signed}.{_b64(_signature(_checked_secret(secret), signed))}"


def verify_token(secret: bytes | str, token: str, *, now: float | None = None) -> Claims:
    """The claims of ``token`` if ``secret`` signed it and it has not expired.

    Raises
    ------
    Unauthenticated
        The token is malformed, not signed with ``secret`` (or not with HS256), or expired.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthenticated("malformed token: expected a JWT (header.claims.signature)")
    signed = f"{parts[0]}.{parts[1]}"
    try:
        signature = _unb64(parts[2])
    except ValueError:
        raise Unauthenticated("malformed token signature") from None
    # the signature is checked before anything of the token is parsed or believed, "alg" included
    if not hmac.compare_digest(signature, _signature(_checked_secret(secret), signed)):
        raise Unauthenticated("token not signed by this deployment")
    try:
        header, claims = json.loads(_unb64(parts[0])), json.loads(_unb64(parts[1]))
        subject, roles, expires = str(claims["sub"]), tuple(str(r) for r in claims["roles"]), float(claims["exp"])
    except (ValueError, KeyError, TypeError):
        raise Unauthenticated("malformed token claims") from None
    if header != _HEADER:
        raise Unauthenticated("token header: expected HS256")
    if expires <= (time.time() if now is None else now):
        raise Unauthenticated(f"token of {subject!r} expired")
    return Claims(subject, roles, expires)


def required_role(method: str) -> str | None:
    """The role a call of ``method`` (full name, ``/package.Service/Method``) needs; None for health and reflection."""
    if not method.startswith("/nightshift."):
        return None
    if method in _ADMIN_ONLY:
        return "admin"
    if method in _INGEST_WRITES:
        return "ingest"
    return "infer"


def authorize(secret: bytes, metadata: Iterable[tuple[str, str | bytes]], method: str) -> Claims | None:
    """Check the bearer token in a call's ``metadata`` for ``method``; the caller's claims (None: no token needed).

    ``admin`` holds every role.

    Raises
    ------
    Unauthenticated
        No bearer token, or one :func:`verify_token` refuses.
    PermissionDenied
        The token lacks the role ``method`` needs.
    """
    role = required_role(method)
    if role is None:
        return None
    values = [value for key, value in metadata if key == "authorization"]
    if not values:
        raise Unauthenticated(f"{method}: no credentials; send 'authorization: Bearer <token>' ({AUTH_TOKEN_ENV})")
    value = values[0] if isinstance(values[0], str) else values[0].decode(errors="replace")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(f"{method}: expected 'authorization: Bearer <token>'")
    claims = verify_token(secret, token.strip())
    if role not in claims.roles and "admin" not in claims.roles:
        raise PermissionDenied(f"{method} needs the role {role!r}; the token of {claims.subject!r} has {list(claims.roles)}")
    return claims
