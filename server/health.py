"""Liveness and readiness for load balancers and orchestrators.

``/livez`` answers 200 while the process serves requests at all. ``/readyz`` answers 200 only
when this process should get traffic: Redis answers, every script is loaded (a Redis that
restarted empty gets them loaded again here), the ledger database answers at the schema
version this code needs, and the process is not draining.
"""

from __future__ import annotations

import asyncio
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse

from metering.errors import StoreError
from server.runtime import runtime
from settlement.ledger.errors import LedgerError
from settlement.ledger.migrate import SCHEMA_VERSION

#: How long a readiness probe waits for Redis or the database before answering 503.
READY_TIMEOUT_S: Final = 1.0


async def livez(request: Request) -> JSONResponse:
    """200 while the process is up."""
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> JSONResponse:
    """200 when Redis answers with every script loaded, the ledger answers at the expected
    schema version, and the process is not draining."""
    rt = runtime(request)
    if rt.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await rt.store.ping()
            if not await rt.store.scripts_loaded():
                await rt.store.load_scripts()
                if not await rt.store.scripts_loaded():
                    return JSONResponse({"status": "scripts_not_loaded"}, status_code=503)
    except (StoreError, TimeoutError):
        return JSONResponse({"status": "redis_unavailable"}, status_code=503)
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            version = await rt.ledger.schema_version()
    except (LedgerError, TimeoutError):
        return JSONResponse({"status": "database_unavailable"}, status_code=503)
    if version != SCHEMA_VERSION:
        return JSONResponse(
            {"status": "schema_mismatch", "schema_version": version, "expected": SCHEMA_VERSION},
            status_code=503,
        )
    return JSONResponse({"status": "ready"})
