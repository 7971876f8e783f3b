"""Customers' refund requests and the model's consent over the WebSocket, through a real server
process (real Redis, real PostgreSQL, the in-process sandbox and settlement worker): the request
with its attachments checked by content and served to support only, the model's list pushed
live, her answer, and a bad or repeated answer."""

from __future__ import annotations

import base64
import time

import pytest

from clients.errors import Refused
from clients.protocol import RefundsWaiting
from clients.sdk import Client
from clients.tickets import Role
from tests.server.conftest import api
from tests.server.test_refunds_e2e import SUPPORT_KEY, _settled_tab, server
from tests.support.processes import TipmeterProcess, ticket

__all__ = ["server"]  # the module's server fixture, shared

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
PDF = b"%PDF-1.4\n%%EOF\n"


def _file(name: str, content: bytes) -> dict[str, str]:
    return {"filename": name, "content_base64": base64.b64encode(content).decode()}


async def _waiting(model: Client, wanted: int) -> RefundsWaiting:
    """The model's next list of ``wanted`` refunds (earlier lists are skipped)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        message = await model.next_message(max(0.1, deadline - time.monotonic()))
        if isinstance(message, RefundsWaiting) and len(message.refunds) == wanted:
            return message
    raise AssertionError(f"no list of {wanted} refunds reached the console")


async def test_a_request_with_attachments_reaches_the_model_live_and_she_answers(
    server: TipmeterProcess,
) -> None:
    statement = await _settled_tab(server, "c-rq")
    tab_id = statement["tab_id"]
    path = f"/v1/customers/c-rq/tabs/{tab_id}"
    async with (
        api(server) as http,
        Client(server.ws_url, ticket(Role.MODEL, "alice")) as model,
    ):
        view = (await http.get(f"{path}/refunds")).json()
        assert [(x["line_id"], x["refundable_minor"]) for x in view["lines"]] == [
            ("tip:tip-c-rq-1", 700),
            ("tip:tip-c-rq-2", 300),
        ]
        body = {
            "refund_id": "rq-1",
            "reason": "technical_problem",
            "note": "the stream froze",
            "lines": ["tip:tip-c-rq-1"],
            "attachments": [_file("shot.png", PNG), _file("receipt.pdf", PDF)],
        }
        # Checked by content: a script named like a picture, too many files, too big a file.
        for files, code in [
            ([_file("x.png", b"<script>alert(1)</script>")], "attachment_refused"),
            ([_file("a.png", PNG)] * 4, "too_many_attachments"),
            ([_file("big.png", PNG + b"\0" * 1_048_576)], "attachment_refused"),
        ]:
            refused = await http.post(
                f"{path}/refund-requests", json={**body, "attachments": files}
            )
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["code"] == code
        asked = await http.post(f"{path}/refund-requests", json=body)
        assert asked.status_code == 201, asked.text
        assert (asked.json()["status"], asked.json()["origin"]) == ("awaiting_consent", "customer")
        again = await http.post(f"{path}/refund-requests", json=body)
        assert again.status_code == 200, again.text
        other_files = await http.post(
            f"{path}/refund-requests", json={**body, "attachments": [_file("shot.png", PNG)]}
        )
        assert other_files.status_code == 409, other_files.text

        # Pushed to her console live: her list with the customer's words and her line.
        listed = (await _waiting(model, 1)).refunds
        assert list(listed) == ["rq-1"]
        waiting = listed["rq-1"]
        assert (waiting.note, waiting.amount_minor, waiting.origin) == (
            "the stream froze",
            700,
            "customer",
        )
        assert waiting.lines == {"tip:tip-c-rq-1": 700}
        with pytest.raises(Refused) as caught:
            await model.answer_refund("rq-unknown", True)
        assert caught.value.code == "refund_not_found"
        accepted = await model.answer_refund("rq-1", True)
        assert accepted.status == "applied"
        await _waiting(model, 0)
        assert (await model.answer_refund("rq-1", False)).status == "duplicate"

        refund = (await http.get("/v1/refunds/rq-1")).json()
        assert (refund["status"], refund["decided_by"]) == ("succeeded", "model:alice")
        view = (await http.get(f"{path}/refunds")).json()
        assert view["lines"][0]["refundable_minor"] == 0
        (shown,) = view["refunds"]
        assert shown["status"] == "succeeded"
        assert [(a["content_type"], a["filename"]) for a in shown["attachments"]] == [
            ("image/png", "shot.png"),
            ("application/pdf", "receipt.pdf"),
        ]

        # The attachments: support staff only, as downloads no browser renders.
        staff_only = await http.get("/v1/refunds/rq-1/attachments/1")
        assert staff_only.status_code == 403
        served = await http.get(
            "/v1/refunds/rq-1/attachments/1", headers={"Tipmeter-Support-Key": SUPPORT_KEY}
        )
        assert served.status_code == 200
        assert served.content == PNG
        assert served.headers["content-type"] == "application/octet-stream"
        assert served.headers["content-disposition"].startswith("attachment;")
        assert served.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in served.headers["content-security-policy"]
