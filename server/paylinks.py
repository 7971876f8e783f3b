"""The pay-link pages: what is owed, the card form of the case's processor, the outcome.

``GET /pay/{token}`` shows the itemized statement of the case's debt (counting one open of the
link) with a button to the card form of the processor the case uses. The sandbox processor has
a hosted card page of its own here (``/pay/{token}/card``, its test cards): the card form posts
back, the collector charges (:meth:`~settlement.collection.collector.Collector.pay_link`). A
processor with a hosted payment page (Stripe Checkout, Segpay's page:
:mod:`settlement.processors.hosted`) gets the customer instead: ``/pay/{token}/card``
redirects there (:meth:`~settlement.collection.collector.Collector.start_hosted`), and the
processor sends the customer back to ``/pay/{token}/return``, which asks the processor what
became of the payment and records it; a postback (``POST /pay/postback``) does the same from
the processor's side. Either way the customer lands on ``/pay/{token}/outcome``: paid, or
declined with the reason in words.

The token is in the path and nowhere else: the server keeps no access log, the pages send no
referrer, and nothing here logs it. Templates are Jinja2 with autoescape on
(``clients/pages/pay/``); their words come from :mod:`server.paylink_text`, per language.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from metering.money import format_minor
from server.collection_api import collector_of
from server.paylink_text import text
from server.runtime import runtime
from server.subscriptions_api import into_open_tab
from settlement.collection.cases import MEMBERSHIP, Case
from settlement.collection.collector import ChargeCode, Collector, parse_hosted_key, reason_in_words
from settlement.collection.links import LinkRefusal
from settlement.sandbox import APPROVING_CARDS

TEMPLATES_DIR: Final = Path(__file__).parents[1] / "clients" / "pages" / "pay"
#: Bytes of a card form the page reads at most.
FORM_BYTES_MAX: Final = 4_096
#: The sandbox's test cards offered on its hosted card page.
SANDBOX_CARDS: Final = (
    *sorted(APPROVING_CARDS),
    "tok_decline_insufficient_funds",
    "tok_decline_expired_card",
    "tok_decline_stolen_card",
    "tok_decline_invalid_card",
    "tok_decline_card_not_active",
    "tok_decline_do_not_honor",
)
_SANDBOX_KINDS: Final = frozenset({"sandbox", "sandbox-http"})

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=jinja2.select_autoescape(["html"], default=True),
    undefined=jinja2.StrictUndefined,
)

_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}


def _page(name: str, lang: str, status: int = 200, **values: Any) -> HTMLResponse:
    body = _env.get_template(name).render(lang=lang, t=text(lang), page=name[:-5], **values)
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def _refused(refusal: LinkRefusal, lang: str) -> HTMLResponse:
    t = text(lang)
    message = {
        LinkRefusal.EXPIRED: t["expired"],
        LinkRefusal.CLOSED: t["closed"],
    }.get(refusal, t["unusable"])
    status = 404 if refusal is LinkRefusal.NOT_FOUND else 410
    return _page(
        "outcome.html", lang, status, heading=t["title"], message=message, reason="", retry_url=""
    )


def _lang(case: Case | None) -> str:
    return case.language if case is not None else "en"


async def _link_case(request: Request) -> tuple[str, Collector, Case] | Response:
    """The link's token, the collector and the link's case; the not-found page when the token
    names no case."""
    token = request.path_params["token"]
    collector = collector_of(runtime(request))
    case = await collector.find_by_token(token)
    if case is None:
        return _refused(LinkRefusal.NOT_FOUND, "en")
    return token, collector, case


async def show_statement(request: Request) -> Response:
    """The statement of what is owed (one open of the link)."""
    token = request.path_params["token"]
    collector = collector_of(runtime(request))
    now_ms = runtime(request).meter.clock.now_ms()
    case, refusal = await collector.open_link(token, now_ms)
    if refusal is not None or case is None:
        return _refused(refusal or LinkRefusal.NOT_FOUND, _lang(case))
    lines = [
        {"kind": kind, "room": room, "amount": format_minor(amount, case.currency)}
        for kind, room, amount in await collector.statement(case)
    ]
    return _page(
        "statement.html",
        case.language,
        lines=lines,
        total=format_minor(case.amount_minor, case.currency),
        card_url=f"/pay/{token}/card",
    )


async def card_page(request: Request) -> Response:
    """The sandbox processor's hosted card page; it posts the chosen card back."""
    found = await _link_case(request)
    if isinstance(found, Response):
        return found
    token, _, case = found
    rt = runtime(request)
    if request.method == "POST":
        return await _pay(request, token, case)
    if rt.processors.processor(case.processor).spec.kind not in _SANDBOX_KINDS:
        return await _to_hosted_page(request, token, case)
    return sandbox_card_page(
        format_minor(case.amount_minor, case.currency), f"/pay/{token}/card", case.language
    )


def sandbox_card_page(total: str, action: str, lang: str = "en") -> HTMLResponse:
    """The sandbox processor's hosted card page: its test cards, posted to ``action`` (a pay
    link's, or a membership sign-up's: :mod:`server.demo_membership`)."""
    return _page("card.html", lang, total=total, cards=SANDBOX_CARDS, action=action)


async def _to_hosted_page(request: Request, token: str, case: Case) -> Response:
    """Send the customer to the processor's hosted payment page (the same page again while
    this link's payment there is pending)."""
    rt = runtime(request)
    base = str(request.base_url).rstrip("/")
    refused, started = await collector_of(rt).start_hosted(
        token, f"{base}/pay/{token}/return", rt.meter.clock.now_ms()
    )
    if started is not None:
        return RedirectResponse(started.redirect_url, status_code=303)
    code = refused.code if refused is not None else ChargeCode.CLOSED
    if code is ChargeCode.CLOSED:
        refusal = await collector_of(rt).check_link(token, rt.meter.clock.now_ms())
        return _refused(refusal or LinkRefusal.ATTEMPTS_USED, case.language)
    t = text(case.language)
    return _page(
        "outcome.html",
        case.language,
        409 if code is ChargeCode.BUSY else 503,
        heading=t["title"],
        message=t["busy"],
        reason="",
        retry_url=f"/pay/{token}/card",
    )


async def hosted_return(request: Request) -> Response:
    """Where the processor's page sends the customer back: what became of the payment is asked
    of the processor (never read from this URL), recorded, and shown."""
    found = await _link_case(request)
    if isinstance(found, Response):
        return found
    token, collector, case = found
    rt = runtime(request)
    number = await collector.pending_hosted(token)
    if number is not None:
        await collector.complete_hosted(case.case_id, number, rt.meter.clock.now_ms())
    return RedirectResponse(f"/pay/{token}/outcome", status_code=303)


async def postback(request: Request) -> Response:
    """A processor's postback about a hosted payment (Segpay): it names the payment by our
    reference; the payment is then asked of the processor and recorded. The body is not
    trusted, so an unsigned postback can do no more than make the server ask."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_BYTES_MAX:
            return Response("form too large", status_code=413)
    form = parse_qs(body.decode(errors="replace"))
    named = parse_hosted_key(form.get("merchantreference", [""])[0])
    if named is None:
        return Response("unknown reference", status_code=404)
    rt = runtime(request)
    result = await collector_of(rt).complete_hosted(named[0], named[1], rt.meter.clock.now_ms())
    if result.code is ChargeCode.UNAVAILABLE:
        return Response("try again", status_code=503)
    return Response("ok", status_code=200)


async def _pay(request: Request, token: str, case: Case) -> Response:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_BYTES_MAX:
            return Response("form too large", status_code=413)
    card = parse_qs(body.decode(errors="replace")).get("payment_method", [""])[0]
    if not card:
        return RedirectResponse(f"/pay/{token}/card", status_code=303)
    rt = runtime(request)
    result = await collector_of(rt).pay_link(token, card, rt.meter.clock.now_ms())
    if result.code is ChargeCode.PAID and case.origin == MEMBERSHIP:
        # A membership restored: its allowance reaches the member's open tab at once.
        await into_open_tab(rt, case.customer, case.currency)
    if result.code is ChargeCode.BUSY:
        t = text(case.language)
        return _page(
            "outcome.html",
            case.language,
            409,
            heading=t["title"],
            message=t["busy"],
            reason="",
            retry_url=f"/pay/{token}/card",
        )
    return RedirectResponse(f"/pay/{token}/outcome", status_code=303)


async def outcome_page(request: Request) -> Response:
    """Paid, or declined with the reason in words (from the case's newest attempt)."""
    found = await _link_case(request)
    if isinstance(found, Response):
        return found
    token, collector, case = found
    t = text(case.language)
    fresh = await collector.case(case.case_id)
    if fresh is not None and fresh["state"] == "paid":
        return _page(
            "outcome.html",
            case.language,
            heading=t["paid_title"],
            message=t["paid"],
            reason="",
            retry_url="",
        )
    attempt = await collector.latest_attempt(case.case_id)
    if attempt is not None and attempt.status == "pending":
        # Back from a processor's page that has not decided yet (or was left unpaid): the
        # same page again, not the statement (which would count an open of the link).
        return _page(
            "outcome.html",
            case.language,
            heading=t["title"],
            message=t["busy"],
            reason="",
            retry_url=f"/pay/{token}/card",
        )
    if attempt is None or attempt.status != "declined":
        return RedirectResponse(f"/pay/{token}", status_code=303)
    refusal = await collector.check_link(token, runtime(request).meter.clock.now_ms())
    return _page(
        "outcome.html",
        case.language,
        heading=t["declined_title"],
        message=t["declined"],
        reason=t[reason_in_words(attempt.decline_reason)],
        retry_url="" if refusal is not None else f"/pay/{token}/card",
    )


def routes() -> list[Route]:
    """The pay-link pages' routes."""
    return [
        Route("/pay/{token}", show_statement, methods=["GET"]),
        Route("/pay/{token}/card", card_page, methods=["GET", "POST"]),
        Route("/pay/{token}/outcome", outcome_page, methods=["GET"]),
        Route("/pay/{token}/return", hosted_return, methods=["GET"]),
        Route("/pay/postback", postback, methods=["POST"]),
    ]
