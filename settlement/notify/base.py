"""The notifier protocol: one message, one channel, one result code."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

#: Longest SMS text sent (longer texts are refused by :func:`check`, not cut).
SMS_CHARS_MAX: Final = 480
#: Longest e-mail subject.
SUBJECT_CHARS_MAX: Final = 200


class Channel(StrEnum):
    """How a message travels."""

    SMS = "sms"
    EMAIL = "email"


class SendCode(StrEnum):
    """How sending ended."""

    SENT = "sent"
    REFUSED = "refused"  # the provider refused this message (bad number or address)
    UNAVAILABLE = "unavailable"  # the provider could not be reached: retry later


@dataclass(frozen=True, slots=True)
class Message:
    """One message to one recipient (``html`` for e-mail only, optional)."""

    channel: Channel
    to: str
    text: str
    subject: str = ""
    html: str = ""


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one send: its code, and the provider's id when sent."""

    code: SendCode
    provider_id: str = ""
    detail: str = ""


class Notifier(Protocol):
    """Sends messages on the channels it supports."""

    @property
    def channels(self) -> frozenset[Channel]:
        """The channels this notifier can send on."""
        ...

    async def send(self, message: Message) -> SendResult:
        """Send ``message`` once; never raises for a refused or unreachable provider."""
        ...


def masked(recipient: str) -> str:
    """A recipient as logs may show it: the first two and last two characters."""
    if len(recipient) <= 4:
        return "***"
    return f"{recipient[:2]}***{recipient[-2:]}"


def check(message: Message) -> str:
    """Why ``message`` cannot be sent as it is ("" when it can)."""
    if not message.to:
        return "no recipient"
    if message.channel is Channel.SMS and len(message.text) > SMS_CHARS_MAX:
        return f"an SMS is at most {SMS_CHARS_MAX} characters"
    if len(message.subject) > SUBJECT_CHARS_MAX:
        return f"a subject is at most {SUBJECT_CHARS_MAX} characters"
    return ""
