"""Support's "find my payment": from a capture id (on the card statement, in the processor's
dashboard) to the tab it settled and its itemized statement."""

from __future__ import annotations

from typing import Final

from metering import keys
from metering.keys import is_id
from metering.outcomes import TabRef
from metering.store import Store, as_text, translated
from settlement.statements import Statement, read_statement

#: Longest capture id accepted (processors' ids are far shorter).
CAPTURE_ID_CHARS_MAX: Final = 255


async def find_capture(store: Store, capture_id: str) -> Statement | None:
    """Return the statement of the tab that capture ``capture_id`` settled, or None.

    None also for a malformed or unknown id, and once the lookup has expired
    (``SettlementConfig.capture_lookup_ttl_ms``, 400 days by default).
    """
    if type(capture_id) is not str or not 0 < len(capture_id) <= CAPTURE_ID_CHARS_MAX:
        return None
    with translated():
        raw = await store.client.get(keys.capture_lookup(capture_id))
    if raw is None:
        return None
    customer, _, tab_id = as_text(raw).partition("/")
    if not (is_id(customer) and is_id(tab_id)):
        return None
    statement = await read_statement(store, TabRef(customer, tab_id))
    if statement is None or statement.capture_id != capture_id:
        return None
    return statement
