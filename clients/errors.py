"""The SDK's exceptions::

TipmeterError
├── HandshakeRefused   the server refused the connection (status, code: ticket_expired …)
├── Refused            the server answered a message with an error (code, message, tab)
└── Disconnected       the connection is closed and will not come back (closed, or the
                       client gave up reconnecting)
"""

from __future__ import annotations

from clients.protocol import TabView


class TipmeterError(Exception):
    """Root of the SDK's exceptions."""


class HandshakeRefused(TipmeterError):
    """The server refused the WebSocket handshake; ``code`` says why (see docs/protocol.md)."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(f"HTTP {status} {code}: {message}".rstrip(": "))
        self.status = status
        self.code = code

    @property
    def needs_new_ticket(self) -> bool:
        """True when a fresh ticket would help (it expired, was used, or is wrong)."""
        return self.code.startswith("ticket_")


class Refused(TipmeterError):
    """The server refused a message. ``tab`` is the balance the refusal came with, if any."""

    def __init__(self, code: str, message: str, tab: TabView | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.tab = tab


class Disconnected(TipmeterError):
    """The connection is gone for good."""
