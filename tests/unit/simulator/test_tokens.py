from __future__ import annotations

import base64

import orjson
import pytest

from worker.simulator import tokens


def _claims(token: str) -> dict[str, object]:
    part = token.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("0", 0), (0, 0), ("86400", 3600), ("3600", 3600), ("60", 3600), ("", 3600), (None, 3600)],
)
def test_expiry_setting_is_zero_only_for_exactly_zero(raw: str | int | None, seconds: int) -> None:
    assert tokens.parse_expires_in(raw) == seconds


def test_minted_token_carries_upstream_claims_in_upstream_order() -> None:
    token, claims = tokens.mint(
        "shop-bot", "01JV6Z8K3QW5T7Y9B2N4M6P8R0", "s", now=1000, expires_in=0
    )
    assert list(_claims(token)) == ["instanceName", "apiName", "tokenId", "iat", "exp", "sub"]
    assert _claims(token) == {
        "instanceName": "shop-bot",
        "apiName": "whatsapp-api",
        "tokenId": "01JV6Z8K3QW5T7Y9B2N4M6P8R0",
        "iat": 1000,
        "exp": 1000,
        "sub": "g-t",
    }
    assert claims.expires_at == claims.issued_at


def test_header_is_hs256_jwt() -> None:
    token = tokens.sign({"a": 1}, "s")
    header = token.split(".")[0]
    assert orjson.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}


def test_known_hs256_vector_verifies() -> None:
    # jwt.io's HS256 example, signed with "your-256-bit-secret".
    token = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiw"
        "iaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    )
    assert (
        tokens.verify(token, "your-256-bit-secret", now=0, ignore_expiration=False)["name"]
        == "John Doe"
    )


def test_exp_equal_to_iat_passes_only_with_expiry_ignored() -> None:
    token, _ = tokens.mint("i", "t", "s", now=1000, expires_in=0)
    assert tokens.verify(token, "s", now=10**9, ignore_expiration=True)["instanceName"] == "i"
    with pytest.raises(tokens.InvalidToken, match="jwt expired"):
        tokens.verify(token, "s", now=1000, ignore_expiration=False)


def test_token_expires_at_exp() -> None:
    token, _ = tokens.mint("i", "t", "s", now=1000, expires_in=3600)
    assert tokens.verify(token, "s", now=4599.9, ignore_expiration=False)
    with pytest.raises(tokens.InvalidToken, match="jwt expired"):
        tokens.verify(token, "s", now=4600, ignore_expiration=False)


def _tampered(token: str) -> str:
    head, body, signature = token.split(".")
    return f"{head}.{body}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("a.b", "jwt malformed"),
        ("a.b.c.d", "jwt malformed"),
        ("!!!.???.sig", "jwt malformed"),
        (tokens.sign({"a": 1}, "other"), "invalid signature"),
        (_tampered(tokens.sign({"a": 1}, "s")), "invalid signature"),
    ],
)
def test_bad_tokens_are_refused_with_a_reason(token: str, reason: str) -> None:
    with pytest.raises(tokens.InvalidToken) as refused:
        tokens.verify(token, "s", now=0, ignore_expiration=True)
    assert str(refused.value) == f"invalid token: {reason}"


def test_other_algorithms_are_refused() -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = tokens.sign({"a": 1}, "s").split(".", 1)[1]
    with pytest.raises(tokens.InvalidToken, match="invalid algorithm"):
        tokens.verify(f"{header}.{body}", "s", now=0, ignore_expiration=True)


@pytest.mark.parametrize(
    ("token", "shaped"),
    [
        (tokens.sign({"a": 1}, "s"), True),
        ("aaa.bbb", True),
        ("aaa.bbb.", True),
        ("not-a-jwt", False),
        ("a.b.c.d", False),
        ("a b.c.d", False),
        ("", False),
    ],
)
def test_jwt_shape_check_follows_validator_js(token: str, shaped: bool) -> None:
    assert tokens.looks_like_jwt(token) is shaped
