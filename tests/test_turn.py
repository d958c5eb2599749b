"""TURN through Debian's coturn on loopback, configured as deploy/turnserver.conf ships it (use-auth-secret).

Two aiortc peers are forced to relay (`iceTransportPolicy: relay`) with the ICE servers the room-token
endpoint hands out and connect through coturn; with the servers handed out for a session whose join
window has closed, coturn refuses the allocation and they cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from broker.clock import Clock
from broker.settings import Settings
from tests.programs import require
from tests.signaling_support import booking_in_window, join, room_token
from tests.support import Api, free_port

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CONF = ROOT / "deploy" / "turnserver.conf"
SECRET = "turn-test-secret-0123456789"
# Lines of the shipped file a loopback test must replace: it listens and relays on 127.0.0.1 (aiortc
# relays to the other peer's relayed address, which here is loopback), on a free port, logging to a file.
REPLACED = ("listening-port=", "min-port=", "max-port=", "denied-peer-ip=127.")


@dataclasses.dataclass(frozen=True)
class Coturn:
    port: int
    log: Path  # coturn's output, for reading after a failure

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"


def loopback_conf(tmp: Path, port: int) -> Path:
    """deploy/turnserver.conf with what loopback needs instead of a public address and its safeguards."""
    kept = [line for line in SHIPPED_CONF.read_text().splitlines() if not line.strip().startswith(REPLACED)]
    kept += [
        "listening-ip=127.0.0.1",
        "relay-ip=127.0.0.1",
        f"listening-port={port}",
        "allow-loopback-peers",
        "no-tls",
        "no-dtls",
        "log-file=stdout",
        f"pidfile={tmp / 'turnserver.pid'}",
        f"userdb={tmp / 'turndb'}",
    ]
    conf = tmp / "turnserver.conf"
    conf.write_text("\n".join(kept) + "\n")
    return conf


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    turnserver = require("turnserver", "coturn")
    tmp = tmp_path / "coturn"
    tmp.mkdir()
    port = free_port()
    conf = loopback_conf(tmp, port)
    # The secret on the command line, as deploy/compose.yaml passes it (it is not in the shipped file).
    log = tmp / "turn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [turnserver, "-c", str(conf), f"--static-auth-secret={SECRET}"], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while True:  # coturn listens on TCP and UDP alike; TCP says when it is up
            assert proc.poll() is None, f"turnserver exited with {proc.returncode}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            assert time.monotonic() < deadline, "turnserver did not start listening within 10 s"
            time.sleep(0.05)
        yield Coturn(port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def settings(settings: Settings, coturn: Coturn) -> Settings:
    return dataclasses.replace(settings, turn_urls=(coturn.url,), turn_secret=SECRET)


def relay_only(ice_servers: list[dict[str, Any]]) -> RTCPeerConnection:
    """A peer that may only use relayed candidates: aiortc (1.16) takes the W3C `iceTransportPolicy`
    in RTCConfiguration and hands it to aioice, which then gathers no host or server-reflexive
    candidates at all (RFC 9429 section 3.5.3), only TURN allocations."""
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential")) for s in ice_servers
    ]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY))


def candidates(sdp: str) -> list[str]:
    return [line for line in sdp.splitlines() if line.startswith("a=candidate:")]


async def negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> tuple[list[str], list[str]]:
    """Offer and answer passed by hand: the subject here is the relay, not signaling (tests/test_webrtc.py
    and tests/test_signaling.py carry descriptions through /ws). Returns both sides' candidate lines."""
    async with asyncio.timeout(20):  # gathering waits for coturn's allocation answers
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
    return candidates(offerer.localDescription.sdp), candidates(answerer.localDescription.sdp)


async def both_tokens(api: Api, now: dt.datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    booking = await booking_in_window(api, now)
    await api.ready_to_join(booking.id, booking.client_key)
    return await room_token(api, booking, "therapist"), await room_token(api, booking, "client")


async def allocation_error(coturn: Coturn, token: dict[str, Any]) -> int | None:
    """The ERROR-CODE coturn answers a TURN Allocate (RFC 8656) made with the token's credential; None if granted."""
    (turn,) = [s for s in token["ice_servers"] if s.get("username")]
    try:
        async with asyncio.timeout(10):
            transport, _ = await create_turn_endpoint(
                asyncio.DatagramProtocol, ("127.0.0.1", coturn.port), turn["username"], turn["credential"]
            )
    except TransactionFailed as refused:
        code: int = refused.response.attributes["ERROR-CODE"][0]
        return code
    transport.close()
    return None


def expiry(token: dict[str, Any]) -> int:
    """The expiry coturn reads from a use-auth-secret username, `<unix time>:<participant>`."""
    (turn,) = [s for s in token["ice_servers"] if s.get("username")]
    return int(turn["username"].split(":", 1)[0])


async def test_relay_only_peers_connect_through_coturn_with_the_room_token_credentials(
    api: Api, clock: Clock, coturn: Coturn
) -> None:
    therapist, client = await both_tokens(api, clock.now())
    # The credential lives as long as the join window (ends 10 minutes after the session), not the token.
    assert expiry(therapist) == expiry(client) > time.time() + 30 * 60
    a, b = relay_only(therapist["ice_servers"]), relay_only(client["ice_servers"])
    try:
        channel = a.createDataChannel("relay")
        opened = asyncio.Event()
        received: asyncio.Queue[str] = asyncio.Queue()
        channel.on("open", opened.set)

        @b.on("datachannel")
        def on_channel(remote: Any) -> None:
            remote.on("message", lambda message: received.put_nowait(message))

        offered, answered = await negotiate(a, b)
        # Each side offers only its coturn allocation on 127.0.0.1: nothing direct to fall back on.
        assert offered and answered
        assert all(" typ relay " in line and " 127.0.0.1 " in line for line in offered + answered), (offered, answered)
        async with asyncio.timeout(20):
            await opened.wait()
            channel.send("through the relay")
            assert await received.get() == "through the relay"
        assert a.connectionState == b.connectionState == "connected"
        assert await allocation_error(coturn, therapist) is None
    finally:
        await a.close()
        await b.close()


async def test_credentials_of_a_closed_join_window_are_refused_by_coturn(
    api: Api, clock: Clock, coturn: Coturn
) -> None:
    # A session two days ago, its room tokens asked for while its window was open: the rehearsal clock
    # is moved back, coturn's clock is not. Its credentials expired when that window closed.
    clock.advance(-dt.timedelta(days=2))
    therapist, client = await both_tokens(api, clock.now())
    assert expiry(therapist) < time.time() - 24 * 3600
    a, b = relay_only(therapist["ice_servers"]), relay_only(client["ice_servers"])
    try:
        offered, answered = await negotiate(a, b)
        # coturn refused the allocation, so there is no relayed address to offer, and with the relay
        # policy nothing else: no pair to check, no connection.
        assert offered == [] and answered == []
        await asyncio.sleep(2)
        assert a.connectionState != "connected" and b.connectionState != "connected"
        # Why: asked directly, coturn answers the Allocate with 401 for either credential.
        assert await allocation_error(coturn, therapist) == await allocation_error(coturn, client) == 401
    finally:
        await a.close()
        await b.close()


async def test_turn_credentials_are_also_in_the_joined_message(
    api: Api, clock: Clock, http: aiohttp.ClientSession, coturn: Coturn
) -> None:
    therapist, _ = await both_tokens(api, clock.now())
    ws, joined = await join(http, therapist)
    try:
        assert joined["ice_servers"] == therapist["ice_servers"]
    finally:
        await ws.close()
