"""Instance tokens: HS256 JWTs minted and verified the way CodeChat ``whatsapp-api`` does.

Upstream signs ``{instanceName, apiName, tokenId, iat, exp, sub}`` with ``jsonwebtoken``
(``instance.service.ts:54-85``) and verifies with
``verify(token, secret, {ignoreExpiration: EXPIRES_IN === 0})``. Its configuration has a
parsing quirk (``env.config.ts:231-235``): ``Number.isInteger`` of a string is always
false, so ``AUTHENTICATION_JWT_EXPIRES_IN`` is 0 only when it is exactly ``"0"`` and 3600
for any other value, ``"86400"`` included. With 0, tokens carry ``exp == iat`` (they look
expired to any client-side decoder) and are never checked for expiry.

Pure: no clock, no I/O. ``now`` is passed in as unix seconds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

API_NAME: Final = "whatsapp-api"
"""``apiName`` claim; upstream's package name, checked by REST, not by the socket."""

DEFAULT_EXPIRES_IN: Final = 3600
"""What upstream falls back to for any ``AUTHENTICATION_JWT_EXPIRES_IN`` other than "0"."""

_HEADER: Final = {"alg": "HS256", "typ": "JWT"}

# validator.js ``isJWT`` (class-validator ``@IsJWT``): two or three dot-separated parts,
# each URL-safe base64 with at most two '=' of padding.
_JWT_SHAPE: Final = re.compile(
    r"^[A-Za-z0-9\-_]+={0,2}\.[A-Za-z0-9\-_]+={0,2}(?:\.[A-Za-z0-9\-_]*={0,2})?$"
)


class InvalidToken(Exception):
    """A token that upstream's ``jsonwebtoken.verify`` would reject; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid token: {self.reason}"


@dataclass(frozen=True)
class TokenClaims:
    """The claims of an instance token (field order is upstream's)."""

    instance_name: str
    """``instanceName``: the socket hub keys subscriptions by it."""
    token_id: str
    """``tokenId``: a ULID upstream stores with the instance (never checked on the socket)."""
    issued_at: int
    """``iat``, unix seconds."""
    expires_at: int
    """``exp``, unix seconds; equal to ``iat`` when expiry is off."""
    api_name: str = API_NAME
    subject: str = "g-t"

    def to_json(self) -> dict[str, Any]:
        return {
            "instanceName": self.instance_name,
            "apiName": self.api_name,
            "tokenId": self.token_id,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "sub": self.subject,
        }


def parse_expires_in(raw: str | int | None) -> int:
    """Token lifetime in seconds as upstream derives it from ``AUTHENTICATION_JWT_EXPIRES_IN``.

    Only the exact string ``"0"`` (or the int 0) turns expiry off; everything else, including
    a valid number of seconds such as ``"86400"``, becomes 3600 (upstream's parsing bug).
    """
    if raw in (0, "0"):
        return 0
    return DEFAULT_EXPIRES_IN


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def sign(claims: Mapping[str, Any], secret: str) -> str:
    """Encode ``claims`` as a compact HS256 JWT."""
    signing_input = (
        _b64url(orjson.dumps(_HEADER)) + "." + _b64url(orjson.dumps(dict(claims)))
    ).encode("ascii")
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return signing_input.decode("ascii") + "." + _b64url(signature)


def mint(
    instance_name: str, token_id: str, secret: str, now: int, expires_in: int
) -> tuple[str, TokenClaims]:
    """A new instance token issued at ``now`` living ``expires_in`` seconds (0 = exp == iat)."""
    claims = TokenClaims(instance_name, token_id, issued_at=now, expires_at=now + expires_in)
    return sign(claims.to_json(), secret), claims


def looks_like_jwt(token: str) -> bool:
    """validator.js ``isJWT``, the format check upstream runs before verifying."""
    return bool(_JWT_SHAPE.match(token))


def verify(token: str, secret: str, now: float, ignore_expiration: bool) -> dict[str, Any]:
    """Check ``token`` as ``jsonwebtoken.verify`` does for an HS256 secret; return its claims.

    Raises:
        InvalidToken: malformed, wrong algorithm, bad signature, or expired (``now >= exp``
            unless ``ignore_expiration``).
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("jwt malformed")
    try:
        header = orjson.loads(_b64url_decode(parts[0]))
        payload = orjson.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (binascii.Error, ValueError):
        raise InvalidToken("jwt malformed") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise InvalidToken("jwt malformed")
    if header.get("alg") != "HS256":
        # jsonwebtoken also accepts HS384/HS512 for a string secret; upstream only ever
        # mints HS256, so the simulator accepts only that.
        raise InvalidToken("invalid algorithm")
    expected = hmac.new(
        secret.encode(), f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256
    ).digest()
    if not hmac.compare_digest(expected, signature):
        raise InvalidToken("invalid signature")
    exp = payload.get("exp")
    if not ignore_expiration and isinstance(exp, int | float) and now >= exp:
        raise InvalidToken("jwt expired")
    return payload
