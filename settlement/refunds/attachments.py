"""A customer's attachments to a refund request (receipts, screenshots): checked by content.

What a file *is* is read from its first bytes, never from its name or from the type the
browser declared: a PNG, a JPEG or a PDF, or it is refused. Each is bounded in size, a request
in number. They are kept in the ledger's database (``refund_attachments``, migration 0007),
outside any web root, and served back to support staff only — as a download
(``Content-Disposition: attachment``, ``nosniff``, a sandboxing ``Content-Security-Policy``),
never rendered as a page or script of this site.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

#: Attachments one request carries at most (the database holds the same bound).
ATTACHMENTS_MAX: Final = 3
#: Largest attachment, in bytes (the database holds the same bound).
ATTACHMENT_BYTES_MAX: Final = 1_048_576
#: Longest file name kept (shown to staff only, as text).
FILENAME_CHARS_MAX: Final = 100

#: The types accepted, by the bytes each one starts with.
_SIGNATURES: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"%PDF-", "application/pdf"),
)


@dataclass(frozen=True, slots=True)
class Attachment:
    """One checked attachment: its type (from its content), its name as given, its bytes."""

    content_type: str
    filename: str
    content: bytes

    @property
    def sha256(self) -> str:
        """The content's SHA-256, hex (a repeated request must bring the same files)."""
        return hashlib.sha256(self.content).hexdigest()


def sniff(content: bytes) -> str | None:
    """The type ``content`` is, by its first bytes (None: none accepted)."""
    for magic, content_type in _SIGNATURES:
        if content.startswith(magic):
            return content_type
    return None


def check(filename: str, content: bytes) -> Attachment | str:
    """An :class:`Attachment`, or why it is refused (a short sentence for the customer)."""
    if not content:
        return "the file is empty"
    if len(content) > ATTACHMENT_BYTES_MAX:
        return f"a file may be at most {ATTACHMENT_BYTES_MAX // 1024} KiB"
    content_type = sniff(content)
    if content_type is None:
        return "only PNG and JPEG images and PDF documents are accepted (checked by content)"
    # The name is kept for staff as plain text: printable, one line, bounded.
    name = "".join(ch for ch in filename if ch.isprintable())[:FILENAME_CHARS_MAX]
    return Attachment(content_type, name, content)
