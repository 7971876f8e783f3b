"""The SMTP adapter: e-mail through a mail server (stdlib :mod:`smtplib`, in a thread).

Text and, when given, HTML alternatives. A 5xx refusal of the recipient is ``refused``; a
connection failure or a 4xx is ``unavailable`` (retry later). Every bound is named.
"""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Final

from settlement.notify.base import Channel, Message, SendCode, SendResult, check

#: Longest one SMTP exchange may take.
SMTP_TIMEOUT_S_DEFAULT: Final = 15.0


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where the mail server is and who the mail is from."""

    host: str
    port: int = 25
    sender: str = "tipmeter@localhost"
    username: str = ""
    password: str = ""
    starttls: bool = False
    timeout_s: float = SMTP_TIMEOUT_S_DEFAULT


class SmtpNotifier:
    """Sends e-mail through an SMTP server."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    @property
    def channels(self) -> frozenset[Channel]:
        """E-mail only."""
        return frozenset({Channel.EMAIL})

    async def send(self, message: Message) -> SendResult:
        """Send one e-mail."""
        problem = check(message)
        if message.channel is not Channel.EMAIL:
            problem = "SMTP sends e-mail only"
        if problem:
            return SendResult(SendCode.REFUSED, detail=problem)
        mail = EmailMessage()
        mail["From"] = self.config.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        return await asyncio.to_thread(self._deliver, mail)

    def _deliver(self, mail: EmailMessage) -> SendResult:
        config = self.config
        try:
            with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as server:
                if config.starttls:
                    server.starttls()
                if config.username:
                    server.login(config.username, config.password)
                refused = server.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            permanent = all(500 <= code < 600 for code in codes)
            return SendResult(
                SendCode.REFUSED if permanent else SendCode.UNAVAILABLE, detail=str(codes)
            )
        except (smtplib.SMTPException, OSError) as exc:
            return SendResult(SendCode.UNAVAILABLE, detail=type(exc).__name__)
        if refused:
            return SendResult(SendCode.REFUSED, detail="recipient refused")
        return SendResult(SendCode.SENT, provider_id=str(mail["Message-ID"] or ""))
