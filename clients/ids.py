"""The one pattern every client-minted and site-given id matches (customers, rooms, tabs, tips).

Ids go into Redis key names and hash tags, so the pattern has no ``:``, ``{`` or ``}``: an id
can never break out of its place in a key. The wire protocol, the HTTP API, its OpenAPI
document and the key builders all check ids against this one pattern.
"""

from __future__ import annotations

import re
from typing import Final

#: Letters, digits, ``_``, ``.`` and ``-``; 1 to 64 of them.
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
