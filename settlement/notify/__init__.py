"""Messages to customers (pay links by SMS and e-mail), through one notifier protocol.

What it owns: the :class:`~settlement.notify.base.Notifier` protocol and its adapters — SMTP
(:mod:`settlement.notify.smtp`), an HTTP SMS provider (:mod:`settlement.notify.sms`) and the
log notifier, the embedded default (:mod:`settlement.notify.log`) — and the message templates
per language (:mod:`settlement.notify.templates`: English, German, Italian, Lithuanian; Jinja2,
autoescaped for HTML). A message carries a pay link, which is a secret: no adapter logs a
message's body, only its channel, masked recipient and length.

What it may import: :mod:`metering.money` (amounts in words) and :mod:`settlement.http` (the
SMS adapter's HTTP client). Nothing in :mod:`server`.

Outcomes are :class:`~settlement.notify.base.SendCode` values, returned: ``sent``, ``refused``
(the provider refused this message: a bad number or address — do not retry) and
``unavailable`` (retry later).
"""
