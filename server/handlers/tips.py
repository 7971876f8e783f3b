"""``tip``: pay a room's model from the viewer's tab, answered exactly once."""

from __future__ import annotations

import logging

from clients.protocol import ErrorCode, Result, Tip, TipReceipt
from clients.tickets import Role
from metering.errors import StoreError, StoreUnavailable
from metering.outcomes import Code, TipResult
from metering.tips import TipRequest
from server.handlers.context import ERRORS, Context, explain
from server.views import tab_view

log = logging.getLogger("tipmeter.ws")


async def handle_tip(ctx: Context, tip: Tip) -> None:
    """Apply a tip (within the connection's tip rate) and answer it exactly once."""
    rt, conn = ctx.rt, ctx.conn
    if ctx.throttled(conn.tips, "too many tips", tip.id):
        return
    if conn.role is not Role.VIEWER:
        ctx.refuse(ErrorCode.NOT_ALLOWED, "only viewers tip", id=tip.id)
        return
    if tip.currency != conn.currency:
        ctx.refuse(
            ErrorCode.CURRENCY_MISMATCH,
            f"this connection spends from a {conn.currency} tab",
            id=tip.id,
        )
        return
    request = TipRequest(
        tip_id=tip.id,
        room=tip.room,
        amount_minor=tip.amount_minor,
        currency=tip.currency,
        viewer_name=conn.claims.name[: rt.meter.limits.viewer_name_chars_max],
        anonymous=tip.anonymous,
        message=tip.message,
    )
    conn.tips_in_flight += 1
    result: TipResult | None
    try:
        applied = await ctx.on_current_tab(lambda ref: rt.meter.tips.apply(ref, request))
        result = applied[1] if applied else TipResult(code=Code.TAB_NOT_FOUND, tip_id=tip.id)
    except StoreUnavailable:
        result = None
        # The tip may have applied with its answer lost: its room event may wait in the outbox.
        rt.meter.rooms.owe(conn.subject)
        ctx.refuse(ErrorCode.UNAVAILABLE, "Redis is unavailable; retry", id=tip.id)
    except StoreError:
        result = None
        log.exception("tip failed", extra={"fields": {"connection": conn.id}})
        ctx.refuse(ErrorCode.INTERNAL_ERROR, "internal error; retry", id=tip.id)
    finally:
        conn.tips_in_flight -= 1
    if result is not None:
        await _answer_tip(ctx, tip, result)
    if not conn.tips_in_flight:
        conn.release_tab_push()


async def _answer_tip(ctx: Context, tip: Tip, result: TipResult) -> None:
    """Send the one reply a tip gets: a result, or an error with the tab's balance."""
    rt, conn = ctx.rt, ctx.conn
    rt.metrics.count_tip(result.code.value, tip.currency, tip.amount_minor)
    tab_id = conn.tab_id or ""
    view = tab_view(tab_id, conn.currency, result.balance) if tab_id else None
    if result.code.ok:
        if result.event is not None:
            rt.meter.rooms.relay_soon(result.event)
            rt.cap_watch.tip_applied(conn.subject, tab_id, result)
        elif result.code is Code.DUPLICATE:
            # The first try may have applied without being relayed (its answer was lost).
            rt.meter.rooms.owe(conn.subject)
        if view is not None and view.version > conn.tab_version:
            conn.tab_version = view.version
        receipt = TipReceipt(seq=result.seq, applied_at_ms=result.applied_at_ms)
        status = "applied" if result.code is Code.APPLIED else "duplicate"
        await conn.reply(Result(id=tip.id, status=status, tab=view, tip=receipt), "result")
        return
    code = ERRORS.get(result.code, ErrorCode.INTERNAL_ERROR)
    ctx.refuse(code, explain(code), id=tip.id, tab=view)
