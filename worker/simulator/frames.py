"""WebSocket frames as the server writes them, and pre-serialised payload templates.

The simulator writes finished frames straight to the connection's transport: server frames
are unmasked (RFC 6455 §5.1), so a frame is a 2-10 byte header plus the payload bytes. That
keeps the send path to one ``transport.write`` per event, which is what lets one process
push tens of thousands of frames per second. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

import orjson

OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2


def frame_header(length: int, opcode: int = OP_TEXT) -> bytes:
    """Header of a final, unmasked, uncompressed frame carrying ``length`` payload bytes."""
    first = 0x80 | opcode
    if length < 126:
        return struct.pack("!BB", first, length)
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def text_frame(payload: bytes) -> bytes:
    """A text frame around UTF-8 ``payload`` (the gateway only ever sends text frames)."""
    return frame_header(len(payload)) + payload


def binary_frame(payload: bytes) -> bytes:
    return frame_header(len(payload), OP_BINARY) + payload


def json_frame(payload: Any) -> bytes:
    """``JSON.stringify(payload)`` in a text frame: compact, UTF-8, no envelope."""
    return text_frame(orjson.dumps(payload))


#: Placeholders inside a template; control characters, so no real payload contains them.
_ID_SLOT: Final = "\u0001ID\u0001"
_TS_SLOT: Final = "\u0001TS\u0001"


@dataclass(frozen=True)
class FrameTemplate:
    """A serialised payload with holes for its unique id and its timestamp.

    Consumers deduplicate by message id, so load traffic cannot repeat ids, and a long run
    should carry current timestamps; rendering is a single ``bytes.join`` of the
    precomputed header, the text between the holes, the id and the time. The id and the
    time have fixed widths, so the frame length (hence its header) never changes.
    """

    header: bytes
    parts: tuple[bytes, ...]
    """Text around the holes: ``len(slots) + 1`` pieces."""
    slots: tuple[str, ...]
    """``"id"`` or ``"ts"`` for each hole, in order of appearance."""
    id_prefix: str = "3EB0"
    id_width: int = 18

    def render(self, n: int, now: int = 0) -> bytes:
        """The frame for the ``n``-th use of this template at unix second ``now``."""
        if not self.slots:
            return self.header
        pieces = [self.header, self.parts[0]]
        for slot, part in zip(self.slots, self.parts[1:], strict=True):
            if slot == "id":
                pieces.append(f"{self.id_prefix}{n:0{self.id_width}X}".encode())
            else:
                pieces.append(b"%010d" % now)
            pieces.append(part)
        return b"".join(pieces)


#: Where each event keeps the id consumers use to tell events apart.
UNIQUE_ID_FIELD: Final = {
    "messages.upsert": "keyId",
    "send.message": "keyId",
    "messages.update": "id",
    "call.upsert": "id",
}


def make_template(
    event: str, payload: Any, id_prefix: str = "3EB0", id_width: int = 18
) -> FrameTemplate:
    """Turn one generated payload into a template with holes for its unique id and its
    ``messageTimestamp`` where it has them; other payloads become a fixed frame."""
    field = UNIQUE_ID_FIELD.get(event)
    holes: dict[str, Any] = {}
    if isinstance(payload, dict):
        if field is not None and field in payload:
            holes[field] = _ID_SLOT
        if isinstance(payload.get("messageTimestamp"), int):
            holes["messageTimestamp"] = _TS_SLOT
    if not holes:
        frame = json_frame(payload)
        return FrameTemplate(frame, (), (), id_prefix, id_width)
    body = orjson.dumps({**payload, **holes})
    markers = {"id": orjson.dumps(_ID_SLOT)[1:-1], "ts": orjson.dumps(_TS_SLOT)}
    found = sorted((body.index(m), kind) for kind, m in markers.items() if m in body)
    parts, slots, cursor = [], [], 0
    for index, kind in found:
        parts.append(body[cursor:index])
        slots.append(kind)
        cursor = index + len(markers[kind])
    parts.append(body[cursor:])
    length = sum(map(len, parts)) + sum(
        id_width + len(id_prefix) if k == "id" else 10 for k in slots
    )
    return FrameTemplate(frame_header(length), tuple(parts), tuple(slots), id_prefix, id_width)
