"""Identifiers the gateway hands out: ULIDs (token ids, sent-message ids) and WhatsApp-style
message ids. Pure; randomness comes from the caller's seeded ``random.Random``."""

from __future__ import annotations

import random
from typing import Final

_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(now_ms: int, rng: random.Random) -> str:
    """A 26-character ULID: 48-bit millisecond time, 80 random bits, Crockford base32."""
    value = (now_ms & ((1 << 48) - 1)) << 80 | rng.getrandbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def message_id(rng: random.Random, prefix: str = "3EB0", length: int = 20) -> str:
    """A WhatsApp message id such as ``3EB0A1B2C3D4E5F6A7B8`` (upper-case hex)."""
    return prefix + f"{rng.getrandbits(4 * (length - len(prefix))):0{length - len(prefix)}X}"
