"""A room participant in Python: joins through /ws with a room token and negotiates real WebRTC (aiortc).

Used by the tests (two of these meet in a room) and by `teleroom probe`. It needs no camera,
microphone or media file: `SyntheticVideo` paints frames and aiortc's `AudioStreamTrack` is
silence. Every admitted peer gets its own `RTCPeerConnection` (a `PeerLink`) with one video and
one audio track each way and a negotiated data channel (`protocol.DATA_CHANNEL_ID`, so neither
side has to wait for the other to announce it).

Negotiation follows the perfect-negotiation roles (W3C webrtc-pc, section 10.4, "Perfect
Negotiation Example"): the therapist is impolite and ignores an offer that collides with its
own; the client is polite. aiortc cannot roll back a local offer, so this participant, when
polite, never offers: it answers, which leaves no glare on its side and interoperates with a
browser peer that does offer. aiortc sends no trickle candidates (its descriptions carry them),
but it accepts the candidates a browser trickles.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fractions
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack, VideoStreamTrack
from aiortc.sdp import candidate_from_sdp
from av import VideoFrame

from signaling import protocol as p

log = logging.getLogger(__name__)

JOIN_ANSWER_SECONDS = 10.0


class SyntheticVideo(VideoStreamTrack):
    """Small frames whose brightness changes over time: real video without a camera."""

    def __init__(self, width: int = 160, height: int = 120) -> None:
        super().__init__()
        self.width = width
        self.height = height
        self.count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=self.width, height=self.height, format="yuv420p")
        shade = (self.count * 4) % 256
        for index, plane in enumerate(frame.planes):
            plane.update(bytes([shade if index == 0 else 128]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = fractions.Fraction(time_base.numerator, time_base.denominator)
        self.count += 1
        return frame


class PeerLink:
    """One RTCPeerConnection to one peer, and what arrived over it."""

    def __init__(self, peer: str, polite: bool, ice_servers: list[p.IceServer], media: bool = True) -> None:
        self.peer = peer
        self.polite = polite
        config = RTCConfiguration(
            iceServers=[RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in ice_servers]
        )
        self.pc = RTCPeerConnection(configuration=config)
        self.making_offer = False
        self.frames: dict[str, int] = {"video": 0, "audio": 0}
        self.first_video = asyncio.Event()
        self.connected = asyncio.Event()
        self.messages: asyncio.Queue[str] = asyncio.Queue()
        self.channel_open = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        if media:
            self.pc.addTrack(SyntheticVideo())
            self.pc.addTrack(AudioStreamTrack())
        self.channel: RTCDataChannel = self.pc.createDataChannel(
            p.DATA_CHANNEL_LABEL, negotiated=True, id=p.DATA_CHANNEL_ID
        )
        self.channel.on("open", self.channel_open.set)
        self.channel.on("message", self._on_message)
        if self.channel.readyState == "open":
            self.channel_open.set()
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def _on_message(self, message: str | bytes) -> None:
        self.messages.put_nowait(message if isinstance(message, str) else message.decode(errors="replace"))

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._readers.append(asyncio.get_running_loop().create_task(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames[track.kind] = self.frames.get(track.kind, 0) + 1
                if track.kind == "video":
                    self.first_video.set()

    async def _on_state(self) -> None:
        if self.pc.connectionState == "connected":
            self.connected.set()

    def dtls_states(self) -> set[str]:
        """The DTLS transport state of every transceiver and of the data channel."""
        states = {t.sender.transport.state for t in self.pc.getTransceivers() if t.sender.transport is not None}
        if self.pc.sctp is not None:
            states.add(self.pc.sctp.transport.state)
        return states

    async def offer(self) -> dict[str, Any]:
        self.making_offer = True
        try:
            await self.pc.setLocalDescription(await self.pc.createOffer())
        finally:
            self.making_offer = False
        return _description(self.pc.localDescription)

    async def on_signal(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """Apply a peer's description or candidate; the answer to send back, if any."""
        description = data.get("description")
        if isinstance(description, dict):
            kind, sdp = description.get("type"), description.get("sdp")
            if kind not in ("offer", "answer") or not isinstance(sdp, str):
                return None
            collision = kind == "offer" and (self.making_offer or self.pc.signalingState != "stable")
            if collision and not self.polite:
                return None  # impolite: our own offer wins; the polite peer will answer it
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
            if kind == "offer":
                await self.pc.setLocalDescription(await self.pc.createAnswer())
                return _description(self.pc.localDescription)
            return None
        candidate = data.get("candidate")
        if isinstance(candidate, dict) and isinstance(candidate.get("candidate"), str) and candidate["candidate"]:
            found = candidate_from_sdp(candidate["candidate"].removeprefix("candidate:"))
            found.sdpMid = candidate.get("sdpMid")
            found.sdpMLineIndex = candidate.get("sdpMLineIndex")
            with contextlib.suppress(ValueError):
                await self.pc.addIceCandidate(found)
        return None

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        await self.pc.close()


def _description(description: RTCSessionDescription | None) -> dict[str, Any]:
    assert description is not None
    return {"description": {"type": description.type, "sdp": description.sdp}}


class Participant:
    """Joins a room through the real /ws and keeps a PeerLink to every admitted peer."""

    def __init__(
        self,
        signaling_url: str,
        token: str,
        *,
        location: str | None = None,
        session: aiohttp.ClientSession | None = None,
        origin: str | None = None,
        media: bool = True,
    ) -> None:
        self.signaling_url = signaling_url
        self.token = token
        self.location = location
        self.origin = origin
        self.media = media
        self._session = session
        self._own_session = session is None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.joined: p.Joined | None = None
        self.state: p.State = "waiting"
        self.links: dict[str, PeerLink] = {}
        self.inbox: asyncio.Queue[p.ServerMessage] = asyncio.Queue()
        self.link_added = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._work: set[asyncio.Task[None]] = set()
        # Negotiation steps run one at a time, in the order the server sent them.
        self._negotiation = asyncio.Lock()

    @property
    def id(self) -> str:
        assert self.joined is not None
        return self.joined.participant

    @property
    def polite(self) -> bool:
        return self.joined is None or self.joined.role != "therapist"

    async def join(self) -> p.Joined:
        """Connect, send `join`, wait for `joined`; then follow the protocol in the background."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Origin": self.origin} if self.origin else None
        self.ws = await self._session.ws_connect(self.signaling_url, headers=headers, heartbeat=10.0)
        await self.send(p.Join(token=self.token, location=self.location))
        async with asyncio.timeout(JOIN_ANSWER_SECONDS):
            first = p.decode_server(await self.ws.receive_str())
        if not isinstance(first, p.Joined):
            raise ConnectionError(f"the server refused to join: {first}")
        self.joined = first
        self.state = first.state
        self._reader = asyncio.create_task(self._read(), name=f"participant-{first.participant}")
        for peer in first.peers:
            self._spawn(self._link(peer.id))
        return first

    async def send(self, message: p.ClientMessage) -> None:
        assert self.ws is not None
        await self.ws.send_str(p.encode(message).decode())

    async def admit(self, participant: str) -> None:
        await self.send(p.Admit(participant=participant))

    async def chat(self, text: str) -> None:
        await self.send(p.Chat(text=text))

    async def next(self, kind: type[p.ServerMessage]) -> p.ServerMessage:
        """The next server message of type `kind` (others are skipped). Wrap in asyncio.timeout."""
        while True:
            message = await self.inbox.get()
            if isinstance(message, kind):
                return message

    async def link(self, peer: str) -> PeerLink:
        """The PeerLink to `peer`, once it exists. Wrap in asyncio.timeout."""
        while peer not in self.links:
            self.link_added.clear()
            await self.link_added.wait()
        return self.links[peer]

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            message = p.decode_server(msg.data)
            self.inbox.put_nowait(message)
            match message:
                case p.Admitted():
                    self.state = "admitted"
                case p.PeerJoined(participant=peer):
                    self._spawn(self._link(peer.id, fresh=True))
                case p.PeerLeft(participant=peer):
                    self._spawn(self._unlink(peer.id))
                case p.Relayed(from_=peer, data=data):
                    self._spawn(self._on_signal(peer, data))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._work.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._work.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("participant: negotiation step failed", exc_info=task.exception())

    def _new_link(self, peer: str) -> PeerLink:
        assert self.joined is not None
        link = PeerLink(peer, self.polite, self.joined.ice_servers, media=self.media)
        self.links[peer] = link
        self.link_added.set()
        return link

    async def _link(self, peer: str, fresh: bool = False) -> None:
        async with self._negotiation:
            old = self.links.pop(peer, None) if fresh else None
            if old is not None:
                await old.close()  # the peer reconnected: start over with a new connection
            link = self.links.get(peer) or self._new_link(peer)
            if not self.polite:
                await self._signal(peer, await link.offer())

    async def _unlink(self, peer: str) -> None:
        async with self._negotiation:
            link = self.links.pop(peer, None)
            if link is not None:
                await link.close()

    async def _on_signal(self, peer: str, data: dict[str, Any]) -> None:
        async with self._negotiation:
            link = self.links.get(peer) or self._new_link(peer)
            answer = await link.on_signal(data)
            if answer is not None:
                await self._signal(peer, answer)

    async def _signal(self, peer: str, data: dict[str, Any]) -> None:
        await self.send(p.Signal(to=peer, data=data))

    async def close(self) -> None:
        for task in list(self._work):
            task.cancel()
        if self._reader is not None:
            self._reader.cancel()
        for link in list(self.links.values()):
            await link.close()
        self.links.clear()
        if self.ws is not None:
            await self.ws.close()
        if self._own_session and self._session is not None:
            await self._session.close()


async def wait_until(predicate: Callable[[], bool], seconds: float = 10.0, step: float = 0.05) -> None:
    """Poll a condition that no event announces (frame counts) until it holds, or TimeoutError."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - counters bumped by aiortc's decoder tasks have no event
            await asyncio.sleep(step)


@dataclasses.dataclass
class EchoResult:
    """What the echo check saw: a DTLS-connected peer, frames coming back, the data channel echoing."""

    connected: bool = False
    video_frames: int = 0
    audio_frames: int = 0
    channel_echo: bool = False
    seconds: float = 0.0
    error: str | None = None


async def echo_check(base_url: str, session: aiohttp.ClientSession, *, seconds: float = 20.0) -> EchoResult:
    """Offer to POST /api/v1/echo/offer and check our own video and a data-channel message come back."""
    result = EchoResult()
    started = time.monotonic()
    link = PeerLink("echo", polite=False, ice_servers=[])
    try:
        offer = (await link.offer())["description"]
        async with session.post(base_url.rstrip("/") + "/api/v1/echo/offer", json=offer) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                result.error = f"HTTP {resp.status} {body.get('code') if isinstance(body, dict) else ''}".strip()
                return result
        await link.on_signal({"description": body})
        async with asyncio.timeout(seconds):
            await link.connected.wait()
            result.connected = link.dtls_states() == {"connected"}
            await link.channel_open.wait()
            link.channel.send("echo?")
            result.channel_echo = await link.messages.get() == "echo?"
        await wait_until(lambda: link.frames["video"] >= 5, seconds)
    except TimeoutError:
        result.error = "timed out"
    finally:
        result.video_frames = link.frames["video"]
        result.audio_frames = link.frames["audio"]
        result.seconds = time.monotonic() - started
        await link.close()
    return result
