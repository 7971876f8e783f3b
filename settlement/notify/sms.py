"""The HTTP SMS provider adapter.

The provider's API, as most of them speak it: ``POST {base_url}/v1/messages`` with
``Authorization: Bearer <api key>`` and a JSON body ``{"to": "+3706…", "text": "…",
"sender": "…"}``; ``201 {"id": "…"}`` when accepted, ``400``/``422`` for a number it refuses,
``429``/``5xx`` when it cannot take it now. Nothing is logged but the status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

from settlement import http
from settlement.notify.base import Channel, Message, SendCode, SendResult, check

#: Longest one request to the provider may take.
SMS_TIMEOUT_S_DEFAULT: Final = 10.0


@dataclass(frozen=True, slots=True)
class SmsConfig:
    """Where the provider is, its key and the sender name."""

    base_url: str
    api_key: str
    sender: str = "tipmeter"
    timeout_s: float = SMS_TIMEOUT_S_DEFAULT


class HttpSmsNotifier:
    """Sends SMS through an HTTP provider."""

    def __init__(self, config: SmsConfig) -> None:
        self.config = config

    @property
    def channels(self) -> frozenset[Channel]:
        """SMS only."""
        return frozenset({Channel.SMS})

    async def send(self, message: Message) -> SendResult:
        """Send one SMS."""
        problem = check(message)
        if message.channel is not Channel.SMS:
            problem = "the SMS provider sends SMS only"
        if problem:
            return SendResult(SendCode.REFUSED, detail=problem)
        body = orjson.dumps({"to": message.to, "text": message.text, "sender": self.config.sender})
        try:
            reply = await http.request(
                "POST",
                self.config.base_url.rstrip("/") + "/v1/messages",
                body=body,
                headers={
                    "authorization": f"Bearer {self.config.api_key}",
                    "content-type": "application/json",
                },
                timeout_s=self.config.timeout_s,
            )
        except http.HttpFailure:
            return SendResult(SendCode.UNAVAILABLE, detail="no reply")
        if reply.status in (200, 201, 202):
            try:
                found = orjson.loads(reply.body)
            except orjson.JSONDecodeError:
                found = {}
            provider_id = str(found.get("id", "")) if isinstance(found, dict) else ""
            return SendResult(SendCode.SENT, provider_id=provider_id)
        if reply.status == 429 or reply.status >= 500:
            return SendResult(SendCode.UNAVAILABLE, detail=f"status {reply.status}")
        return SendResult(SendCode.REFUSED, detail=f"status {reply.status}")
