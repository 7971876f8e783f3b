"""One notifier over several: each channel to the adapter configured for it."""

from __future__ import annotations

from collections.abc import Mapping

from settlement.notify.base import Channel, Message, Notifier, SendCode, SendResult


class ChannelNotifier:
    """Sends each message through the notifier of its channel (refused when none)."""

    def __init__(self, by_channel: Mapping[Channel, Notifier]) -> None:
        self._by_channel = dict(by_channel)

    @property
    def channels(self) -> frozenset[Channel]:
        """The channels some notifier serves."""
        return frozenset(self._by_channel)

    async def send(self, message: Message) -> SendResult:
        """Send through the channel's notifier."""
        notifier = self._by_channel.get(message.channel)
        if notifier is None:
            return SendResult(SendCode.REFUSED, detail=f"no notifier for {message.channel}")
        return await notifier.send(message)
