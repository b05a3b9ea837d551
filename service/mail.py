"""Outgoing e-mail that may carry a large attachment.

The message is written to a file part by part (the attachment is base64-encoded
in chunks) and sent over SMTP by streaming that file, so its size never
becomes memory. Without ``SMTP_HOST`` the file is moved into
``REPORT_OUTBOX_DIR`` as an ``.eml`` file instead.
"""

from __future__ import annotations

import base64
import re
import secrets
import shutil
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage, MIMEPart
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import IO

from service.config import Settings
from service.errors import MailDeliveryFailed
from service.models.base import utcnow

SMTP_TIMEOUT_SECONDS = 60
# 57 input bytes make one 76-character base64 line, the longest MIME allows.
_BASE64_CHUNK = 57 * 16_384
_SEND_CHUNK = 1 << 20
_LINE_START_DOT = re.compile(rb"^\.", re.MULTILINE)
CRLF = b"\r\n"


@dataclass(frozen=True)
class Attachment:
    """A file to attach (under its own name), read in chunks while the message is written."""

    path: Path
    content_type: str


@dataclass(frozen=True)
class Delivery:
    """Where a message went: the recipients that accepted it, or the outbox file."""

    accepted: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    outbox_path: Path | None = None


def write_message(
    out: IO[bytes],
    *,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    text: str,
    html: str,
    attachment: Attachment,
) -> str:
    """Write a ``multipart/mixed`` message — text and HTML alternatives plus
    ``attachment`` — to ``out`` with CRLF line ends; return its Message-ID."""
    message_id = make_msgid(domain=sender.rpartition("@")[2] or None)
    boundary = f"=_report_{secrets.token_hex(16)}"
    headers = EmailMessage(policy=SMTP)
    headers["From"] = sender
    headers["To"] = ", ".join(recipients)
    headers["Subject"] = subject
    headers["Date"] = format_datetime(utcnow())
    headers["Message-ID"] = message_id
    headers["Auto-Submitted"] = "auto-generated"
    headers["MIME-Version"] = "1.0"
    headers["Content-Type"] = f'multipart/mixed; boundary="{boundary}"'

    body = MIMEPart(policy=SMTP)
    body.set_content(text, cte="quoted-printable")
    body.add_alternative(html, subtype="html", cte="quoted-printable")

    part = MIMEPart(policy=SMTP)
    part["Content-Type"] = attachment.content_type
    part["Content-Disposition"] = "attachment"
    part.set_param("filename", attachment.path.name, header="Content-Disposition")
    part["Content-Transfer-Encoding"] = "base64"

    delimiter = b"--" + boundary.encode()
    out.write(_header_block(headers) + CRLF)
    out.write(delimiter + CRLF + body.as_bytes(policy=SMTP).rstrip(CRLF) + CRLF)
    out.write(delimiter + CRLF + _header_block(part) + CRLF)
    with attachment.path.open("rb") as source:
        while chunk := source.read(_BASE64_CHUNK):
            out.write(base64.encodebytes(chunk).replace(b"\n", CRLF))
    out.write(delimiter + b"--" + CRLF)
    return message_id


def _header_block(part: MIMEPart) -> bytes:
    return b"".join(SMTP.fold_binary(name, value) for name, value in part.items())


def deliver(
    settings: Settings, message: Path, *, sender: str, recipients: Sequence[str]
) -> Delivery:
    """Send the message file over SMTP, or move it into the outbox without ``SMTP_HOST``.

    Recipients the server refuses are returned in ``refused`` (the others got it).

    :raises MailDeliveryFailed: the server could not be reached, refused the
        sender, every recipient or the message, or the outbox is not writable.
    """
    host = settings.smtp_host
    if host is None:
        return Delivery(outbox_path=_to_outbox(Path(settings.report_outbox_dir), message))
    try:
        refused = _smtp_send(settings, host, message, sender, recipients)
    except (smtplib.SMTPException, OSError) as exc:
        raise MailDeliveryFailed(
            f"SMTP delivery through {settings.smtp_host}:{settings.smtp_port} failed: {exc}",
            details={"error": type(exc).__name__},
        ) from exc
    return Delivery(
        accepted=tuple(r for r in recipients if r not in refused), refused=tuple(refused)
    )


def _to_outbox(outbox: Path, message: Path) -> Path:
    target = outbox / message.name
    try:
        outbox.mkdir(parents=True, exist_ok=True)
        shutil.move(message, target)
    except OSError as exc:
        raise MailDeliveryFailed(
            f"cannot write to the outbox {outbox}: {exc}", details={"error": type(exc).__name__}
        ) from exc
    return target


def _smtp_send(
    settings: Settings, host: str, message: Path, sender: str, recipients: Sequence[str]
) -> dict[str, tuple[int, bytes]]:
    # smtplib's sendmail() needs the whole message in memory (and copies it
    # twice); this is the same dialogue with the DATA phase streamed from the file.
    with smtplib.SMTP(host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        smtp.ehlo()
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password or "")
        size = [f"SIZE={message.stat().st_size}"] if smtp.has_extn("size") else []
        code, reply = smtp.mail(sender, size)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        refused: dict[str, tuple[int, bytes]] = {}
        for recipient in recipients:
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                refused[recipient] = (code, reply)
        if len(refused) == len(recipients):
            raise smtplib.SMTPRecipientsRefused(refused)
        code, reply = smtp.docmd("DATA")
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        with message.open("rb") as source:
            while lines := source.readlines(_SEND_CHUNK):
                smtp.send(_LINE_START_DOT.sub(b"..", b"".join(lines)))
        smtp.send(b"." + CRLF)
        code, reply = smtp.getreply()
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
    return refused
