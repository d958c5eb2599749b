"""The signaling wire format, declared once: msgspec structs tagged on `type`, and pure (de)serialisers.

Nothing here touches a socket. `decode_client` turns one text frame from a participant into a
`ClientMessage` or raises `ProtocolError` carrying the close code the transport must use;
`encode` turns any message into the bytes of one text frame. docs/signaling.md is the prose
version of this module and a test keeps the two in step.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import Annotated, Any, Literal

import msgspec

# Declared by the broker, which hands the same values out in its room-token answer; re-exported
# here (the `as` form) because they are part of this wire format too.
from broker.ice import IceServer as IceServer
from broker.tokens import MAX_TOKEN_CHARS
from broker.tokens import Role as Role

State = Literal["waiting", "admitted"]

# Identifiers are server-made (UUIDs or short hashes); 64 characters is generous.
ParticipantId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MAX_FRAME_BYTES = 64 * 1024
MAX_CHAT_CHARS = 2000
MAX_LOCATION_CHARS = 100
# Arrays and objects nested in one frame: a WebRTC description or candidate needs 3. Deeper JSON
# would reach the interpreter's recursion limit in the decoder (or later, when relayed and encoded).
MAX_NESTING = 32

# The peer-to-peer data channel, negotiated (no DCEP open message, RFC 8832): both ends create it
# with this label and id, so neither waits for the other to announce it. The echo peer uses it too.
DATA_CHANNEL_LABEL = "teleroom"
DATA_CHANNEL_ID = 0


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses. Every 4xxx code is preceded by an `error` message
    (except `TOO_LARGE`, `BINARY_FRAME` and `ROOM_ENDED`, which is preceded by `ended`) naming the reason."""

    GOING_AWAY = 1001  # standard: the server is shutting down; reconnect with a fresh token
    MALFORMED = 4400  # not JSON, a missing or wrongly typed field, a field over its limit, nested too deep
    TOKEN_REJECTED = 4401  # the join token is invalid, expired, for another room, or already used
    REMOVED = 4403  # the therapist removed this participant
    JOIN_TIMEOUT = 4408  # no `join` within 5 seconds of the upgrade
    REPLACED = 4409  # the same participant connected again; the newer connection wins
    ROOM_ENDED = 4410  # the room closed: the join window is over, the therapist ended it, or the booking was cancelled
    TOO_LARGE = 4413  # a frame over 64 KiB
    BINARY_FRAME = 4415  # a binary frame; the protocol is JSON text only
    UNKNOWN_TYPE = 4422  # JSON with a `type` the protocol does not define
    JOIN_REQUIRED = 4428  # the first message was not `join`
    RATE_LIMITED = 4429  # more messages than the per-connection rate limit allows
    SLOW_CONSUMER = 4503  # the client read too slowly; its outgoing queue overflowed


class ProtocolError(Exception):
    """A frame that breaks the protocol: `code` is the close code, `reason` the stable error code."""

    def __init__(self, close_code: CloseCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.reason = reason
        self.message = message


# --- client -> server ---------------------------------------------------------------------------


class _ClientMessage(msgspec.Struct, tag_field="type", forbid_unknown_fields=True):
    pass


class Join(_ClientMessage, tag="join"):
    """First message: the room token, and optionally where the participant says they are."""

    token: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TOKEN_CHARS)]
    location: Annotated[str, msgspec.Meta(max_length=MAX_LOCATION_CHARS)] | None = None


class Admit(_ClientMessage, tag="admit"):
    """Therapist only: let a waiting participant in."""

    participant: ParticipantId


class Remove(_ClientMessage, tag="remove"):
    """Therapist only: send a participant out of the room."""

    participant: ParticipantId


class End(_ClientMessage, tag="end"):
    """Therapist only: close the room for everyone now."""


class Signal(_ClientMessage, tag="signal"):
    """An opaque WebRTC description or candidate for one admitted peer."""

    to: ParticipantId
    data: dict[str, Any]


class Chat(_ClientMessage, tag="chat"):
    """A line of text for the admitted participants; relayed, never stored or logged."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CHAT_CHARS)]


ClientMessage = Join | Admit | Remove | End | Signal | Chat


# --- server -> client ---------------------------------------------------------------------------


class _ServerMessage(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, omit_defaults=True):
    pass


class Peer(msgspec.Struct, frozen=True):
    id: str
    role: Role


class WaitingParticipant(msgspec.Struct, frozen=True):
    id: str
    name: str
    location: str | None = None


class Joined(_ServerMessage, tag="joined"):
    participant: str
    role: Role
    state: State
    peers: list[Peer]
    ice_servers: list[IceServer]


class Waiting(_ServerMessage, tag="waiting"):
    participant: WaitingParticipant


class Admitted(_ServerMessage, tag="admitted"):
    pass


class PeerJoined(_ServerMessage, tag="peer-joined"):
    participant: Peer


class PeerLeft(_ServerMessage, tag="peer-left"):
    participant: Peer


class Relayed(_ServerMessage, tag="signal"):
    from_: str = msgspec.field(name="from")
    data: dict[str, Any]


class ChatLine(_ServerMessage, tag="chat"):
    from_: str = msgspec.field(name="from")
    text: str
    at: dt.datetime


class Ending(_ServerMessage, tag="ending"):
    at: dt.datetime


class Ended(_ServerMessage, tag="ended"):
    pass


class Error(_ServerMessage, tag="error"):
    code: str
    message: str


ServerMessage = Joined | Waiting | Admitted | PeerJoined | PeerLeft | Relayed | ChatLine | Ending | Ended | Error

CLIENT_TYPES: tuple[type[msgspec.Struct], ...] = (Join, Admit, Remove, End, Signal, Chat)
SERVER_TYPES: tuple[type[msgspec.Struct], ...] = (
    Joined,
    Waiting,
    Admitted,
    PeerJoined,
    PeerLeft,
    Relayed,
    ChatLine,
    Ending,
    Ended,
    Error,
)

# Error codes sent in `error` messages that leave the connection open.
FORBIDDEN = "forbidden"  # admit/remove/end from a client
NOT_ADMITTED = "not_admitted"  # signal/chat before admission, or a signal to a waiting participant
UNKNOWN_PEER = "unknown_peer"  # the named participant is not in this room
ALREADY_JOINED = "already_joined"  # a second `join` on a joined connection; it has no effect

# `join.location` and `chat.text` are one line: no control character at all (C0, DEL, C1).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TOO_DEEP = f"Arrays and objects may nest at most {MAX_NESTING} deep."
_client_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_server_decoder: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)
_encoder = msgspec.json.Encoder()


def tag_of(kind: type[msgspec.Struct]) -> str:
    """The `type` value a message struct is tagged with."""
    tag = kind.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


_CLIENT_TAGS = frozenset(tag_of(t) for t in CLIENT_TYPES)


def decode_client(frame: str | bytes) -> ClientMessage:
    """Parse one text frame from a participant; raise ProtocolError with the close code to use."""
    if len(frame) > MAX_FRAME_BYTES or (isinstance(frame, str) and len(frame.encode()) > MAX_FRAME_BYTES):
        raise ProtocolError(CloseCode.TOO_LARGE, "too_large", f"Frames may be at most {MAX_FRAME_BYTES} bytes.")
    try:
        message = _client_decoder.decode(frame)
    except msgspec.ValidationError as exc:
        raise _classify(frame, exc) from None
    except msgspec.DecodeError:
        raise ProtocolError(CloseCode.MALFORMED, "malformed", "The frame is not valid JSON.") from None
    except RecursionError:  # msgspec's answer to nesting beyond what the interpreter's stack allows
        raise ProtocolError(CloseCode.MALFORMED, "malformed", _TOO_DEEP) from None
    if isinstance(message, Signal) and _nesting(message.data) > MAX_NESTING - 1:
        raise ProtocolError(CloseCode.MALFORMED, "malformed", _TOO_DEEP)
    text = message.location if isinstance(message, Join) else message.text if isinstance(message, Chat) else None
    if text is not None and _CONTROL.search(text):
        raise ProtocolError(CloseCode.MALFORMED, "malformed", "Text may not contain control characters.")
    return message


def _classify(frame: str | bytes, exc: msgspec.ValidationError) -> ProtocolError:
    """Tell an unknown `type` from a known message with bad fields (only on the error path)."""
    try:
        loose = msgspec.json.decode(frame)
    except msgspec.DecodeError:
        loose = None
    except RecursionError:
        return ProtocolError(CloseCode.MALFORMED, "malformed", _TOO_DEEP)
    kind = loose.get("type") if isinstance(loose, dict) else None
    if isinstance(loose, dict) and kind not in _CLIENT_TAGS:
        return ProtocolError(CloseCode.UNKNOWN_TYPE, "unknown_type", "The message `type` is missing or unknown.")
    return ProtocolError(CloseCode.MALFORMED, "malformed", f"Invalid message: {exc}")


def _nesting(value: Any) -> int:
    """How deep arrays and objects nest in `value` (a decoded JSON value; 1 for a flat object)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def decode_server(frame: str | bytes) -> ServerMessage:
    """Parse one frame from the server (used by the Python participant)."""
    return _server_decoder.decode(frame)


def encode(message: ClientMessage | ServerMessage) -> bytes:
    """The UTF-8 JSON text of one frame."""
    return _encoder.encode(message)
