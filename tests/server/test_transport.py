"""The WebSocket transport at its edges: floods, oversized requests, refusals and closes, against
a real tipmeter process on loopback with raw sockets (what a hostile or broken client sends)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from clients.tickets import Role, TicketProblem, _sign
from tests.support.processes import TICKET_SECRET, TipmeterProcess, ticket
from tests.support.waiting import eventually

Pair = tuple[TipmeterProcess, TipmeterProcess]

#: A masked WebSocket ping with a 125-byte payload (the largest), mask key zero.
PING_FRAME = b"\x89" + bytes([0x80 | 125]) + b"\0\0\0\0" + b"p" * 125


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _upgrade_request(port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: tipmeter.v1.json\r\n\r\n"
    ).encode()


def _read_http_answer(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    """Read until the server closes or the headers and declared body are in."""
    sock.settimeout(timeout_s)
    data = b""
    while True:
        chunk = sock.recv(65_536)
        if not chunk:
            return data
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and b"\r\n\r\n" in data:
            for line in head.split(b"\r\n"):
                declared = line.lower().startswith(b"content-length:")
                if declared and len(body) >= int(line.split(b":")[1]):
                    return data


def test_a_ping_flood_that_never_reads_its_pongs_is_bounded(servers: Pair) -> None:
    a, _ = servers
    assert a.process is not None
    pid = a.process.pid
    with socket.create_connection(("127.0.0.1", a.port)) as sock:
        path = "/ws?ticket=" + ticket(Role.BROADCAST, "flood-room")
        sock.sendall(_upgrade_request(a.port, path))
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 101"), answer
        # Never read again. Before the fix the server read every ping and buffered every pong:
        # 64 MB of pings went in and about as much stayed in its memory.
        before = _rss_bytes(pid)
        batch = PING_FRAME * 8_000  # about 1 MB
        sent = 0
        sock.settimeout(2.0)
        deadline = time.monotonic() + 20
        try:
            while sent < 64 * 1024 * 1024 and time.monotonic() < deadline:
                sock.sendall(batch)
                sent += len(batch)
        except TimeoutError:
            pass  # the server stopped reading us: what we want
        grown = _rss_bytes(pid) - before
    assert sent < 48 * 1024 * 1024, f"the server read {sent} bytes of pings"
    assert grown < 24 * 1024 * 1024, f"the server grew by {grown} bytes"
    assert httpx.get(a.base_url + "/livez", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/ws?ticket=v1." + "A" * 9_000, 414, "url_too_long"),
        ("/ws?" + "x" * 8_500, 414, "url_too_long"),
    ],
)
def test_a_request_over_8_kb_is_answered_and_closed(
    servers: Pair, path: str, status: int, code: str
) -> None:
    a, _ = servers
    with socket.create_connection(("127.0.0.1", a.port)) as sock:
        sock.sendall(_upgrade_request(a.port, path))
        answer = _read_http_answer(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode()), answer[:200]
    assert json.loads(body)["error"]["code"] == code


async def test_the_rate_limit_close_and_every_error_before_it_reach_the_client(
    servers: Pair,
) -> None:
    a, _ = servers
    url = f"{a.ws_url}?ticket={ticket(Role.BROADCAST, 'noisy-room')}"
    errors = 0
    async with connect(url, subprotocols=[Subprotocol("tipmeter.v1.json")]) as ws:
        json.loads(await ws.recv())  # the welcome
        for n in range(40):
            await ws.send("not json " + str(n))
        try:
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                errors += frame["type"] == "error"
        except ConnectionClosed as exc:
            closed = exc
    assert closed.rcvd is not None, "no close frame: the client saw 1006"
    assert closed.rcvd.code == 4029
    assert errors >= 21  # the burst of 20, and the error that closed it


def _upgrade_headers() -> dict[str, str]:
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }


def _signed_ticket(**claims: object) -> str:
    now = time.time_ns() // 1_000_000
    payload = {
        "iss": "tipmeter",
        "aud": "tipmeter",
        "iat": now,
        "exp": now + 60_000,
        "jti": base64.urlsafe_b64encode(os.urandom(9)).decode(),
        "role": "broadcast",
        "sub": "odd-room",
        **claims,
    }
    raw = json.dumps(payload).encode()
    body = "v1." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"{body}.{_sign(TICKET_SECRET.encode(), body)}"


HOUR_MS = 3_600_000


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        (None, "ticket_malformed"),  # a non-ASCII signature
        ({"exp": 2**63}, "ticket_malformed"),
        ({"iat": 2**62, "exp": 2**62 + 1}, "ticket_malformed"),
        ({"iat": HOUR_MS, "exp": HOUR_MS + 60_000}, "ticket_not_yet_valid"),
        ({"exp": 24 * HOUR_MS}, "ticket_lifetime_too_long"),
    ],
)
async def test_odd_tickets_get_their_code_not_a_crash(
    servers: Pair, claims: dict[str, int] | None, code: str
) -> None:
    """Small times are offsets from now (the tickets are made when the test runs)."""
    a, _ = servers
    if claims is None:
        query = "ticket=v1.e30.%C3%A9%C3%A9"
    else:
        now = time.time_ns() // 1_000_000
        timed = {k: (now + v if v < 2**53 else v) for k, v in claims.items()}
        query = "ticket=" + _signed_ticket(**timed)
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{a.base_url}/ws?{query}", headers=_upgrade_headers())
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] == TicketProblem(code).explanation


async def test_a_refused_handshake_writes_one_warning_line(servers: Pair) -> None:
    a, _ = servers
    marker = "refusal-marker-room"
    before = len(a.log().splitlines())
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(
            f"{a.base_url}/ws?ticket=v1.bogus.{marker}",
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            },
        )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "ticket_bad_signature"

    def logged() -> list[dict[str, object]]:
        return [json.loads(line) for line in a.log().splitlines()[before:]]

    with contextlib.suppress(AssertionError):  # the assertion below says what was logged
        await eventually(
            lambda: any(line.get("code") == "ticket_bad_signature" for line in logged()),
            timeout_s=5,
        )
    lines = logged()
    about_it = [line for line in lines if line["logger"] in ("tipmeter.ws", "uvicorn.error")]
    assert [(line["level"], line.get("code")) for line in about_it] == [
        ("warning", "ticket_bad_signature")
    ], about_it
    assert marker not in a.log()
