"""The notifier adapters against real local processes: an SMTP server (aiosmtpd, its own
process) and an HTTP SMS provider (its own process); the log notifier; the templates."""

from __future__ import annotations

import contextlib
import email
import email.policy
import logging
import mailbox
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from server.embedded_redis import free_port
from settlement.notify.base import Channel, Message, SendCode
from settlement.notify.log import LogNotifier
from settlement.notify.sms import HttpSmsNotifier, SmsConfig
from settlement.notify.smtp import SmtpConfig, SmtpNotifier
from settlement.notify.templates import LANGUAGES, paylink_message

URL = "https://cam.example/pay/SECRETTOKEN.abc"
START_TIMEOUT_S = 20.0


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@contextlib.contextmanager
def _serving(port: int, process: subprocess.Popen[bytes]) -> Iterator[None]:
    """Once ``process`` listens on ``port``, until the block ends; then it is stopped."""
    try:
        _wait_for_port(port, process)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """aiosmtpd in a process of its own, delivering into a Maildir."""
    port, maildir = free_port(), tmp_path / "maildir"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Mailbox",
            str(maildir),
        ]
    )
    with _serving(port, process):
        yield port, maildir


@pytest.fixture
def sms_provider(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The local SMS provider process; its base URL and outbox."""
    port, outbox = free_port(), tmp_path / "outbox.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.settlement.notify.sms_provider",
            str(port),
            "sms-key",
            str(outbox),
        ],
        cwd=Path(__file__).parents[3],
    )
    with _serving(port, process):
        yield f"http://127.0.0.1:{port}", outbox


async def test_smtp_delivers_the_pay_link_in_german_to_a_real_server(
    smtp_server: tuple[int, Path],
) -> None:
    port, maildir = smtp_server
    notifier = SmtpNotifier(SmtpConfig("127.0.0.1", port, sender="billing@cam.example"))
    message = paylink_message(
        Channel.EMAIL, "bob@example.com", url=URL, amount_minor=1250, currency="EUR", language="de"
    )
    result = await notifier.send(message)
    assert result.code is SendCode.SENT, result
    mails = list(mailbox.Maildir(maildir, create=False))
    assert len(mails) == 1
    mail = email.message_from_bytes(mails[0].as_bytes(), policy=email.policy.default)
    assert mail["To"] == "bob@example.com"
    assert mail["Subject"] == "Ihre Zahlung ist fällig"
    parts = {part.get_content_type(): part for part in mail.walk()}
    text = parts["text/plain"].get_payload(decode=True)
    html = parts["text/html"].get_payload(decode=True)
    assert isinstance(text, bytes)
    assert isinstance(html, bytes)
    assert URL in text.decode()
    assert "Offen sind" in text.decode()
    assert f'href="{URL}"' in html.decode()


async def test_smtp_unreachable_is_unavailable_and_sms_is_refused() -> None:
    notifier = SmtpNotifier(SmtpConfig("127.0.0.1", free_port(), timeout_s=2))
    mail = Message(Channel.EMAIL, "bob@example.com", "hi", subject="s")
    assert (await notifier.send(mail)).code is SendCode.UNAVAILABLE
    sms = Message(Channel.SMS, "+37060000000", "hi")
    assert (await notifier.send(sms)).code is SendCode.REFUSED


async def test_the_sms_provider_gets_the_link_in_lithuanian_and_refusals_are_told_apart(
    sms_provider: tuple[str, Path],
) -> None:
    base_url, outbox = sms_provider
    notifier = HttpSmsNotifier(SmsConfig(base_url, "sms-key", sender="CamSite"))
    message = paylink_message(
        Channel.SMS, "+37060012345", url=URL, amount_minor=990, currency="EUR", language="lt"
    )
    result = await notifier.send(message)
    assert (result.code, result.provider_id) == (SendCode.SENT, "sms_1")
    sent = [orjson.loads(line) for line in outbox.read_text().splitlines()]
    assert sent == [{"to": "+37060012345", "text": message.text, "sender": "CamSite"}]
    assert URL in message.text
    assert "Esate skolingi" in message.text
    bad = Message(Channel.SMS, "37060012345", "x")
    assert (await notifier.send(bad)).code is SendCode.REFUSED
    later = Message(Channel.SMS, "+370600429", "x")
    assert (await notifier.send(later)).code is SendCode.UNAVAILABLE
    wrong_key = HttpSmsNotifier(SmsConfig(base_url, "other"))
    assert (await wrong_key.send(message)).code is SendCode.REFUSED
    gone = HttpSmsNotifier(SmsConfig(f"http://127.0.0.1:{free_port()}", "k", timeout_s=2))
    assert (await gone.send(message)).code is SendCode.UNAVAILABLE


async def test_the_log_notifier_never_logs_the_link(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tipmeter.notify")
    message = paylink_message(
        Channel.SMS, "+37060012345", url=URL, amount_minor=990, currency="EUR", language="en"
    )
    assert (await LogNotifier().send(message)).code is SendCode.SENT
    assert caplog.records
    assert all("SECRETTOKEN" not in record.getMessage() for record in caplog.records)
    assert all("37060012345" not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_renders_both_channels(language: str) -> None:
    sms = paylink_message(
        Channel.SMS, "+1", url=URL, amount_minor=500, currency="USD", language=language
    )
    mail = paylink_message(
        Channel.EMAIL, "a@b.c", url=URL, amount_minor=500, currency="USD", language=language
    )
    assert URL in sms.text
    assert "5.00 USD" in sms.text
    assert URL in mail.text
    assert mail.subject
    assert f'lang="{language}"' in mail.html


def test_html_is_autoescaped_and_an_unknown_language_falls_back_to_english() -> None:
    hostile = 'https://x.example/pay/"><script>alert(1)</script>'
    mail = paylink_message(
        Channel.EMAIL, "a@b.c", url=hostile, amount_minor=500, currency="USD", language="xx"
    )
    assert "<script>" not in mail.html
    assert "&lt;script&gt;" in mail.html
    assert mail.subject == "Your payment is due"
