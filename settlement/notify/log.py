"""The log notifier: the embedded default. It sends nothing and logs that a message would have
gone — never its body (a pay link is a secret), only channel, masked recipient and length."""

from __future__ import annotations

import logging

from settlement.notify.base import Channel, Message, SendCode, SendResult, check, masked

log = logging.getLogger("tipmeter.notify")


class LogNotifier:
    """Accepts every message on every channel and logs its envelope."""

    @property
    def channels(self) -> frozenset[Channel]:
        """Both channels."""
        return frozenset(Channel)

    async def send(self, message: Message) -> SendResult:
        """Log the envelope; the body stays out of the log."""
        problem = check(message)
        if problem:
            return SendResult(SendCode.REFUSED, detail=problem)
        log.info(
            "message not sent (log notifier): %s to %s, %d characters",
            message.channel,
            masked(message.to),
            len(message.text),
        )
        return SendResult(SendCode.SENT, provider_id="log")
