"""The model's answer to a refund waiting for her consent (``refund_answer``).

The answer is recorded by :class:`server.consent_push.ConsentPush` (which also keeps her list
of waiting refunds live on her console); this handler only routes the message there.
"""

from __future__ import annotations

from clients.protocol import ErrorCode, RefundAnswer
from server.handlers.context import Context


async def handle_refund_answer(ctx: Context, message: RefundAnswer) -> None:
    """Record the model's answer and answer it once (``result`` or ``error``)."""
    consent = ctx.rt.consent
    if consent is None:  # the app's lifespan starts it: only a misbuilt app lacks it
        ctx.refuse(ErrorCode.UNAVAILABLE, "refund consent is not running; retry", id=message.id)
        return
    await consent.answer(ctx.conn, message)
