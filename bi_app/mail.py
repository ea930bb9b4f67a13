"""Email through the deployment's SMTP server (``BI_SMTP_URL``, ``BI_SMTP_PASSWORD``, ``BI_MAIL_FROM``), with
Python's own ``smtplib`` and ``email`` packages: a plain-text part, an HTML alternative and attachments."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

from bi_app.config import Config

#: Seconds to wait for the mail server to answer each step.
SMTP_TIMEOUT_S = 30


class MailError(RuntimeError):
    """The mail could not be handed to the server (none configured, refused, unreachable); the message says why."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str
    subtype: str


def message(config: Config, to: str, subject: str, text: str, html: str | None = None,
            attachments: Iterable[Attachment] = ()) -> EmailMessage:
    """An email from ``BI_MAIL_FROM`` to ``to``: ``text``, with ``html`` as its alternative, and ``attachments``."""
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = config.mail_from, to, subject
    mail["Date"], mail["Message-ID"] = formatdate(localtime=False), make_msgid(domain="bi-app")
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to a report
    mail.set_content(text)
    if html is not None:
        mail.add_alternative(html, subtype="html")
    for attachment in attachments:
        mail.add_attachment(attachment.content, maintype=attachment.maintype, subtype=attachment.subtype,
                            filename=attachment.filename)
    return mail


def send(config: Config, mail: EmailMessage) -> None:
    """Hand ``mail`` to ``BI_SMTP_URL``'s server; :class:`MailError` when it cannot be."""
    if not config.smtp_url:
        raise MailError("no mail server is configured (BI_SMTP_URL)")
    url = urlsplit(config.smtp_url)
    secure = url.scheme == "smtps"
    host, port = url.hostname or "", url.port or (465 if secure else 587)
    context = ssl.create_default_context()
    try:
        server = (smtplib.SMTP_SSL(host, port, timeout=SMTP_TIMEOUT_S, context=context) if secure
                  else smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT_S))
        with server:
            server.ehlo()
            if not secure and server.has_extn("starttls"):
                server.starttls(context=context)
                server.ehlo()
            if url.username:
                if not secure and not isinstance(server.sock, ssl.SSLSocket):
                    raise MailError(f"{host} offers no TLS: the mail user's password is not sent in clear")
                server.login(unquote(url.username), config.smtp_password or "")
            refused = server.send_message(mail)
    except MailError:
        raise
    except smtplib.SMTPRecipientsRefused as exc:
        refused = exc.recipients
    except smtplib.SMTPException as exc:
        raise MailError(f"the mail server {host}:{port} refused the mail: {exc}") from None
    except OSError as exc:
        raise MailError(f"the mail server {host}:{port} cannot be reached: {exc.strerror or exc}") from None
    if refused:
        said = "; ".join(f"{address} ({code} {reply.decode(errors='replace')})" for address, (code, reply)
                         in refused.items())
        raise MailError(f"the mail server refused {said}")
