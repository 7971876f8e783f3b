"""``buy``, ``fulfil``, ``decline``: a model's catalog bought against the cap (issue 17).

A viewer's ``buy`` is charged like a tip (docs/purchases.md) and answered once with the
purchase; the model's ``fulfil`` and ``decline`` act on a pending request of her own room. The
state changes reach everyone through the room's events (``purchase``, ``purchase_fulfilled``,
``purchase_voided``, each with the purchase id the viewer minted) and the viewer's tab through
its live channel (a void frees the cap: a ``tab`` push).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from clients.protocol import Buy, Decline, ErrorCode, Fulfil, PurchaseInfo, Result
from clients.tickets import Role
from metering.outcomes import Code, TabRef
from metering.purchase_lifecycle import PurchaseState
from metering.purchase_scripts import PurchaseResult, ResolveResult
from server.catalog import BuyOutcome, ShopCode
from server.catalog_api import shop_of
from server.handlers.context import ERRORS, Context, explain
from server.views import tab_view

_SHOP_ERRORS: Final = {
    ShopCode.ITEM_NOT_FOUND: ErrorCode.ITEM_NOT_FOUND,
    ShopCode.ITEM_INACTIVE: ErrorCode.ITEM_INACTIVE,
    ShopCode.PRICE_MISSING: ErrorCode.PRICE_MISSING,
    ShopCode.LIMIT_REACHED: ErrorCode.LIMIT_REACHED,
}
_RESOLVE_ERRORS: Final = {
    Code.PURCHASE_NOT_FOUND: ErrorCode.PURCHASE_NOT_FOUND,
    Code.PURCHASE_NOT_PENDING: ErrorCode.PURCHASE_NOT_PENDING,
    Code.TAB_NOT_OPEN: ErrorCode.TAB_NOT_OPEN,
    Code.BUSY: ErrorCode.BUSY,
}


@dataclass(frozen=True, slots=True)
class _Bought:
    """A purchase's outcome as :meth:`Context.on_current_tab` reads it: a catalog refusal is
    no reason to try the customer's current tab again."""

    outcome: BuyOutcome

    @property
    def code(self) -> Code:
        code = self.outcome.code
        return code if isinstance(code, Code) else Code.INVALID_FIELD


def _info(outcome: BuyOutcome, result: PurchaseResult, room: str, currency: str) -> PurchaseInfo:
    """The purchase as the viewer sees it (``outcome.item`` is set whenever the money core
    answered: the catalog found the item first)."""
    item = outcome.item
    if item is None or result.state is None:
        raise ValueError("a purchase the money core answered names its item and state")
    voided = result.state is PurchaseState.VOIDED
    return PurchaseInfo(
        purchase_id=result.purchase_id,
        room=room,
        item_id=item.item_id,
        item_name=item.name,
        kind=item.kind.value,
        state=result.state.value,
        amount_minor=0 if voided else item.prices.get(currency, 0),
        until_ms=result.until_ms,
    )


async def handle_buy(ctx: Context, message: Buy) -> None:
    """Buy a catalog item from the viewer's tab and answer it exactly once."""
    rt, conn = ctx.rt, ctx.conn
    if ctx.throttled(conn.tips, "too many purchases", message.id):
        return
    if conn.role is not Role.VIEWER:
        ctx.refuse(ErrorCode.NOT_ALLOWED, "only viewers buy", id=message.id)
        return
    shop = shop_of(rt)

    async def buy(ref: TabRef) -> _Bought:
        return _Bought(
            await shop.buy(
                ref,
                currency=conn.currency,
                room=message.room,
                item_id=message.item_id,
                purchase_id=message.id,
                viewer_name=conn.claims.name[: rt.meter.limits.viewer_name_chars_max],
                anonymous=message.anonymous,
                message=message.message,
            )
        )

    done = await ctx.on_current_tab(buy)
    if done is None:
        ctx.refuse(ErrorCode.NO_OPEN_TAB, explain(ErrorCode.NO_OPEN_TAB), id=message.id)
        return
    tab_id, outcome = done[0], done[1].outcome
    if isinstance(outcome.code, ShopCode):
        ctx.refuse(_SHOP_ERRORS[outcome.code], explain(_SHOP_ERRORS[outcome.code]), id=message.id)
        return
    result = outcome.result
    view = None
    if result is not None and result.balance.state is not None:
        view = tab_view(tab_id, conn.currency, result.balance)
    if result is None or not result.code.ok:
        code = ERRORS.get(outcome.code, ErrorCode.INTERNAL_ERROR)
        ctx.refuse(code, explain(code), id=message.id, tab=view)
        return
    if view is not None and view.version > conn.tab_version:
        conn.tab_version = view.version
    status = "applied" if result.code is Code.APPLIED else "duplicate"
    info = _info(outcome, result, message.room, conn.currency)
    await conn.reply(Result(id=message.id, status=status, tab=view, purchase=info), "result")


async def _resolve(ctx: Context, message: Fulfil | Decline, *, fulfil: bool) -> None:
    rt, conn = ctx.rt, ctx.conn
    if conn.role is not Role.MODEL:
        ctx.refuse(
            ErrorCode.NOT_ALLOWED, "only the room's model acts on its requests", id=message.id
        )
        return
    room = conn.subject
    shop = shop_of(rt)
    customer = await shop.customer_of(room, message.purchase_id)
    result: ResolveResult
    if customer is None:
        result = ResolveResult(code=Code.PURCHASE_NOT_FOUND, purchase_id=message.purchase_id)
    elif fulfil:
        result = await shop.fulfil(room, customer, message.purchase_id)
    else:
        result = await shop.decline(room, customer, message.purchase_id)
    if not result.code.ok:
        code = _RESOLVE_ERRORS.get(result.code, ErrorCode.INTERNAL_ERROR)
        ctx.refuse(code, explain(code), id=message.id)
        return
    status = "applied" if result.code is Code.APPLIED else "duplicate"
    conn.send(Result(id=message.id, status=status), "result")


async def handle_fulfil(ctx: Context, message: Fulfil) -> None:
    """The model marks a request of her room done."""
    await _resolve(ctx, message, fulfil=True)


async def handle_decline(ctx: Context, message: Decline) -> None:
    """The model declines a request of her room (voided before settlement)."""
    await _resolve(ctx, message, fulfil=False)
