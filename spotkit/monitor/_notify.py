"""Where alerts go: the log, e-mail (SMTP) or a webhook (HTTP POST of JSON).

Each channel has one method, :meth:`Channel.send`, that delivers a batch of findings as
one message or raises :class:`NotifyError` (the alert router logs it and tries again
later with :class:`spotkit.backoff.Backoff`). Credentials are never given to a channel
directly: the channel is told the *names* of environment variables and reads them when it
sends, so they never appear in ``rules.yaml`` or in provenance.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl as _ssl
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, ClassVar, Protocol

from spotkit.errors import SpotkitError
from spotkit.monitor._findings import SEVERITIES, Finding

__all__ = [
    "Channel",
    "EmailChannel",
    "LogChannel",
    "NotifyError",
    "WebhookChannel",
    "summary",
]

log = logging.getLogger(__name__)


class NotifyError(SpotkitError):
    """A channel could not deliver an alert (the router retries it later)."""

    def __init__(self, message: str, channel: str):
        super().__init__(message)
        self.channel = channel


class Channel(Protocol):
    """Something that delivers findings: :class:`LogChannel`, :class:`EmailChannel`,
    :class:`WebhookChannel`, or your own class with this method and a ``kind``."""

    kind: ClassVar[str]

    def send(self, findings: Sequence[Finding], *, rule: str) -> None:
        """Deliver ``findings`` (one message) for the alert rule ``rule``; raise
        :class:`NotifyError` when it cannot."""


def _worst(findings: Sequence[Finding]) -> str:
    return max((f.severity for f in findings), key=SEVERITIES.index, default="info")


def summary(findings: Sequence[Finding], *, rule: str) -> tuple[str, str]:
    """A subject line and a body for people (one line per finding, onset and detection).

    Examples
    --------
    >>> f = Finding("quiet", "arrivals", time=1.7e9, beamline="8.3.2",
    ...             message="beamline 8.3.2 has sent nothing for 12 min")
    >>> summary([f], rule="ops")[0]
    '[spotkit] warning: quiet at 8.3.2 (ops)'
    """
    if not findings:
        raise ValueError("summary of no findings")
    first = findings[0]
    where = first.beamline or first.target or first.dataset_id or first.metric
    more = f" and {len(findings) - 1} more" if len(findings) > 1 else ""
    subject = f"[spotkit] {_worst(findings)}: {first.kind} at {where}{more} ({rule})"
    lines = []
    for f in findings:
        d = f.as_dict()
        since = f" (since {d['onset_iso']})" if d["onset_iso"] else ""
        lines.append(f"- [{f.severity}] {f.message}{since}; detected {d['time_iso']}")
    body = "\n".join([f"spotkit alert rule {rule!r}: {len(findings)} finding(s)", "", *lines])
    return subject, body


def _env(name: str | None, what: str, channel: str) -> str | None:
    if name is None:
        return None
    value = os.environ.get(name)
    if value is None:
        raise NotifyError(f"{what}: the environment variable {name} is not set in the process "
                          "that runs the monitor (spotkit watch); set it there", channel)
    return value


@dataclass(frozen=True)
class LogChannel:
    """Alerts as log records of the logger ``spotkit.alerts`` (always works: a fall-back).

    Examples
    --------
    >>> import logging
    >>> LogChannel(level="info").send(
    ...     [Finding("gap", "scan_number", time=0.0, message="scan 42 missing")], rule="r")
    """

    kind: ClassVar[str] = "log"
    level: str = "warning"
    logger: str = "spotkit.alerts"

    def __post_init__(self) -> None:
        if logging.getLevelName(self.level.upper()) not in (10, 20, 30, 40, 50):
            raise ValueError(f"log level {self.level!r}: choose debug, info, warning, error "
                             "or critical")

    def send(self, findings: Sequence[Finding], *, rule: str) -> None:
        """Log one record per finding."""
        out = logging.getLogger(self.logger)
        level = logging.getLevelName(self.level.upper())
        for f in findings:
            out.log(level, "alert=%s kind=%s severity=%s %s", rule, f.kind, f.severity,
                    f.message)


@dataclass(frozen=True)
class EmailChannel:
    """Alerts by e-mail through an SMTP server (stdlib :mod:`smtplib`).

    Parameters
    ----------
    to : sequence of str
        Recipients.
    sender : str
        The ``From`` address.
    host : str
    port : int
        25 (plain or STARTTLS), 587 (submission, STARTTLS) or 465 (``ssl=True``).
    starttls : bool
        Upgrade the connection with STARTTLS before logging in (refused if the server
        does not offer it).
    ssl : bool
        Connect with TLS from the start (port 465).
    username_env, password_env : str, optional
        Names of environment variables holding the login (read when sending).
    timeout : float
        Seconds for the connection and each command.
    subject_prefix : str, optional
        Replaces ``[spotkit]`` at the start of the subject.

    Examples
    --------
    >>> ch = EmailChannel(to=["ops@example.org"], sender="spotkit@example.org",
    ...                   host="smtp.example.org", port=587, password_env="SPOTKIT_SMTP_PASSWORD",
    ...                   username_env="SPOTKIT_SMTP_USER")
    >>> ch.kind, ch.starttls
    ('email', True)
    """

    kind: ClassVar[str] = "email"
    to: tuple[str, ...]
    sender: str
    host: str
    port: int = 587
    starttls: bool = True
    ssl: bool = False
    username_env: str | None = None
    password_env: str | None = None
    timeout: float = 10.0
    subject_prefix: str | None = None
    context: _ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    """TLS context (default: the system's trusted CAs, host names checked)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "to", tuple([self.to] if isinstance(self.to, str)
                                             else self.to))
        if not self.to or not all(isinstance(a, str) and "@" in a for a in self.to):
            raise ValueError(f"e-mail 'to' {list(self.to)!r}: give one or more addresses")
        if "@" not in self.sender:
            raise ValueError(f"e-mail sender {self.sender!r} is not an address")
        if self.starttls and self.ssl:
            raise ValueError("e-mail: choose starttls (port 587/25) or ssl (port 465), not both")
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("e-mail: give both username_env and password_env, or neither")

    def message(self, findings: Sequence[Finding], *, rule: str) -> EmailMessage:
        """The e-mail for ``findings`` (text, plus the findings as a JSON attachment)."""
        subject, body = summary(findings, rule=rule)
        if self.subject_prefix is not None:
            subject = subject.replace("[spotkit]", self.subject_prefix, 1)
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        msg["X-Spotkit-Alert-Rule"] = rule
        msg.set_content(body)
        msg.add_attachment(json.dumps([f.as_dict() for f in findings], indent=1,
                                      default=str).encode(), maintype="application",
                           subtype="json", filename="findings.json")
        return msg

    def send(self, findings: Sequence[Finding], *, rule: str) -> None:
        """Send one e-mail; :class:`NotifyError` on any SMTP or network failure."""
        where = f"SMTP {self.host}:{self.port}"
        user = _env(self.username_env, f"e-mail login for {where}", self.kind)
        password = _env(self.password_env, f"e-mail password for {where}", self.kind)
        msg = self.message(findings, rule=rule)
        context = self.context or _ssl.create_default_context()
        try:
            smtp: smtplib.SMTP = (
                smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
                if self.ssl else smtplib.SMTP(self.host, self.port, timeout=self.timeout))
            with smtp:
                smtp.ehlo()
                if self.starttls:
                    if not smtp.has_extn("starttls"):
                        raise NotifyError(f"{where} does not offer STARTTLS: set starttls: "
                                          "false only for a server on a trusted network",
                                          self.kind)
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if user is not None and password is not None:
                    smtp.login(user, password)
                refused = smtp.send_message(msg)
        except NotifyError:
            raise
        except (OSError, smtplib.SMTPException) as exc:
            raise NotifyError(f"e-mail through {where} failed: {exc}", self.kind) from exc
        if refused:
            log.warning("e-mail through %s: refused recipients %s", where, sorted(refused))
        log.info("alert=%s sent by e-mail to %s (%d finding(s))", rule, ", ".join(self.to),
                 len(findings))


WEBHOOK_FORMATS = ("json", "slack")


@dataclass(frozen=True)
class WebhookChannel:
    """Alerts as an HTTP POST of JSON (stdlib :mod:`urllib`).

    Parameters
    ----------
    url : str, optional
        Where to POST. A Slack or Mattermost incoming-webhook URL holds a secret token:
        give it through ``url_env`` instead.
    url_env : str, optional
        Name of an environment variable holding the URL (read when sending).
    format : {"json", "slack"}
        ``"json"``: ``{"rule", "text", "findings": [...]}``; ``"slack"``: ``{"text": ...}``
        as Slack and Mattermost incoming webhooks take it.
    timeout : float
    headers : mapping, optional
        Extra HTTP headers (no credentials: those belong in ``url_env``).

    Examples
    --------
    >>> ch = WebhookChannel(url="http://localhost:9/hook", format="slack")
    >>> body = ch.payload([Finding("stuck", "run_time", time=0.0, message="job 7 stuck")],
    ...                   rule="r")
    >>> print(body["text"])
    *[spotkit] warning: stuck at run_time (r)*
    - [warning] job 7 stuck; detected 1970-01-01T00:00:00+00:00
    """

    kind: ClassVar[str] = "webhook"
    url: str | None = None
    url_env: str | None = None
    format: str = "json"
    timeout: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("webhook: give url or url_env (one of them)")
        if self.format not in WEBHOOK_FORMATS:
            raise ValueError(f"webhook format {self.format!r}: choose one of {WEBHOOK_FORMATS}")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {self.url!r}: must start with http:// or https://")

    def payload(self, findings: Sequence[Finding], *, rule: str) -> dict[str, Any]:
        """The JSON body that is posted."""
        subject, body = summary(findings, rule=rule)
        lines = body.split("\n", 2)[-1]
        if self.format == "slack":
            return {"text": f"*{subject}*\n{lines}"}
        return {"rule": rule, "text": f"{subject}\n{lines}",
                "findings": [f.as_dict() for f in findings]}

    def send(self, findings: Sequence[Finding], *, rule: str) -> None:
        """POST once; :class:`NotifyError` on a network error or a status >= 300."""
        url = self.url or _env(self.url_env, "webhook URL", self.kind)
        assert url is not None
        if not url.startswith(("http://", "https://")):
            raise NotifyError(f"webhook URL from {self.url_env} must start with http:// or "
                              "https://", self.kind)
        shown = url.split("?", 1)[0] if self.url else f"${self.url_env}"
        data = json.dumps(self.payload(findings, rule=rule), default=str).encode()
        request = urllib.request.Request(  # noqa: S310 (http(s) only, checked above)
            url, data=data, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "spotkit-monitor",
                     **dict(self.headers)})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as exc:
            raise NotifyError(f"webhook {shown} answered HTTP {exc.code} {exc.reason}",
                              self.kind) from exc
        except (OSError, ValueError) as exc:
            raise NotifyError(f"webhook {shown} failed: {exc}", self.kind) from exc
        if status >= 300:
            raise NotifyError(f"webhook {shown} answered HTTP {status}", self.kind)
        log.info("alert=%s posted to webhook %s (%d finding(s))", rule, shown, len(findings))
