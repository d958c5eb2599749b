"""The pre-call check: POST /api/v1/echo/offer answers with an aiortc peer that mirrors the caller.

The caller's own audio and video come back (through aiortc's MediaRelay, no decoding needed
beyond what aiortc does to forward), and data-channel messages on the negotiated channel
(`protocol.DATA_CHANNEL_ID`) are echoed. Each echo peer closes itself after 60 seconds or when
its connection fails. The endpoint is public (a client checks their camera before they have a
room token), so it is rate-limited per address and the number of echo peers alive at once is
bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import msgspec
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from broker.errors import InvalidInput, Unavailable
from broker.http import openapi
from broker.http.endpoints import ApiRoutes, Call, read_json, respond
from broker.http.ratelimit import SlidingWindow, client_address
from broker.schemas import MULTILINE
from signaling import protocol as p

log = logging.getLogger(__name__)

LIFETIME_SECONDS = 60.0
MAX_PEERS = 8
PER_ADDRESS = 5
PER_SECONDS = 60.0

routes = ApiRoutes("echo")


class EchoOffer(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["offer"]
    sdp: Annotated[str, msgspec.Meta(min_length=1, max_length=60_000, extra_json_schema={MULTILINE: True})]


class EchoAnswer(msgspec.Struct):
    type: Literal["answer"]
    sdp: str


class EchoPeers:
    """The echo peers alive on this node, and a sliding-window rate limit per address."""

    def __init__(self) -> None:
        self.peers: set[RTCPeerConnection] = set()
        self.relay = MediaRelay()
        self.limit = SlidingWindow(PER_ADDRESS, PER_SECONDS)
        self._timers: set[asyncio.TimerHandle] = set()

    async def answer(self, offer: EchoOffer) -> RTCSessionDescription:
        pc = RTCPeerConnection()
        self.peers.add(pc)
        channel = pc.createDataChannel(p.DATA_CHANNEL_LABEL, negotiated=True, id=p.DATA_CHANNEL_ID)

        @channel.on("message")
        def _echo_message(message: str | bytes) -> None:
            channel.send(message)

        @pc.on("track")
        def _echo_track(track: MediaStreamTrack) -> None:
            pc.addTrack(self.relay.subscribe(track))

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(pc)

        loop = asyncio.get_running_loop()
        timer = loop.call_later(LIFETIME_SECONDS, lambda: loop.create_task(self.close(pc)))
        self._timers.add(timer)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception:
            timer.cancel()
            self._timers.discard(timer)
            await self.close(pc)
            raise
        assert pc.localDescription is not None
        return pc.localDescription

    async def close(self, pc: RTCPeerConnection) -> None:
        if pc in self.peers:
            self.peers.discard(pc)
            await pc.close()

    async def close_all(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        await asyncio.gather(*(self.close(pc) for pc in list(self.peers)), return_exceptions=True)


ECHO = web.AppKey("echo_peers", EchoPeers)


@routes.route(
    "POST",
    "/api/v1/echo/offer",
    summary="Pre-call check: an SDP offer in, the answer of a peer that sends your audio and video back (60 s)",
    body=EchoOffer,
    response=EchoAnswer,
    errors=(413, 422, 429, 503),
)
async def echo_offer(request: web.Request, call: Call) -> web.Response:
    echo = request.app[ECHO]
    echo.limit.require(client_address(request), f"At most {PER_ADDRESS} echo tests a minute; try again shortly.")
    offer = await read_json(request, EchoOffer)
    assert offer is not None
    if not offer.sdp.startswith("v=0") or "\nm=" not in offer.sdp:
        raise InvalidInput("The SDP offer must be a session description with media (RFC 8866).", code="invalid_sdp")
    if len(echo.peers) >= MAX_PEERS:
        raise Unavailable("Too many echo tests are running; try again in a minute.", code="echo_busy")
    try:
        answer = await echo.answer(offer)
    except (ValueError, AssertionError, KeyError, IndexError) as exc:
        # aiortc's SDP parser reports bad input with these; none of it is our fault.
        raise InvalidInput(f"The SDP offer could not be used: {type(exc).__name__}.", code="invalid_sdp") from None
    log.info("echo peer started (%d alive)", len(echo.peers))
    return respond(EchoAnswer(type="answer", sdp=answer.sdp))


async def echo_ctx(app: web.Application) -> AsyncIterator[None]:
    echo = EchoPeers()
    app[ECHO] = echo
    yield
    with contextlib.suppress(Exception):
        await echo.close_all()


def setup(app: web.Application) -> None:
    """The echo endpoint, and its peers (closed on shutdown)."""
    app.cleanup_ctx.append(echo_ctx)
    openapi.mount(app, routes)
