"""The ``alerts:`` section of a rules file: which monitor findings go where.

Each alert rule selects findings of :mod:`spotkit.monitor` (kind, metric, beamline,
target globs and a minimum severity) and sends them through one channel (``log``,
``email`` or ``webhook``), at most once per ``dedup`` window per finding, never in its
``quiet`` periods, and at most once per ``min_interval``::

    alerts:
      - name: beamline-silent
        match: {kind: [quiet, gap], beamline: "8.3.*", severity: warning}
        email:
          to: [ops@example.org]
          from: spotkit@example.org
          host: smtp.example.org
          port: 587                      # STARTTLS (the default); 465 with ssl: true
          username_env: SPOTKIT_SMTP_USER
          password_env: SPOTKIT_SMTP_PASSWORD
        dedup: 2h
        min_interval: 10m
        timezone: America/Los_Angeles
        quiet:
          - {start: "22:00", end: "07:00"}          # nights
          - {days: [sat, sun]}                      # weekends
          - {begin: 2026-12-24T00:00, finish: 2027-01-04T00:00}   # shutdown
      - name: chat
        match: {kind: [stuck, missing, change]}
        webhook: {url_env: SPOTKIT_MATTERMOST_URL, format: slack}

Credentials are never written in the file: the file names environment variables
(``*_env``) that the process running ``spotkit watch`` has set. The models here are
validated with the rest of the file by :func:`spotkit.flows.load_rules` (unknown keys get
the closest allowed one; problems name their line); :func:`alert_rules` builds the
:class:`spotkit.monitor.AlertRule` objects from the canonical form.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from spotkit.backoff import Backoff
from spotkit.flows._rules_schema import DocumentSpec, Finding, _fail, _Spec, did_you_mean, show

__all__ = ["AlertSpec", "alert_canonical", "alert_rules", "check_alert_names"]

_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SEVERITIES = ("info", "warning", "critical")
_KINDS = ("change", "anomaly", "quiet", "gap", "missing", "stuck", "quality", "reroute")
_CHANNELS = ("log", "email", "webhook")


def _duration(value: Any) -> float:
    from spotkit.monitor import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _env_name(value: Any) -> str:
    if isinstance(value, str) and _ENV.match(value):
        return value
    raise _fail(f"{show(value) if not isinstance(value, str) else 'this'}: the NAME of an "
                "environment variable that holds it (e.g. SPOTKIT_SMTP_PASSWORD), never the "
                "value itself; set the variable where spotkit watch runs")


def _globs(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if items and all(isinstance(v, str) and v for v in items):
        return tuple(items)
    raise _fail(f"{show(value)}: a glob string or a list of globs")


def _kinds(value: Any) -> tuple[str, ...] | None:
    out = _globs(value)
    for kind in out or ():
        # a word close to one of the monitor's kinds is a typo; another word may be the
        # kind of a detector of the facility's own
        hint = did_you_mean(kind, _KINDS)
        if not any(ch in kind for ch in "*?[") and kind not in _KINDS and hint:
            raise _fail(f"unknown finding kind {kind!r}{hint}; the monitor's kinds: "
                        f"{list(_KINDS)} (or a glob, or your own detector's kind)")
    return out


def _addresses(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if items and all(isinstance(a, str) and "@" in a for a in items):
        return tuple(items)
    raise _fail(f"{show(value)}: an e-mail address or a list of them")


def _when(value: Any) -> str:
    if isinstance(value, _dt.datetime | _dt.date):  # YAML reads 2026-12-24T00:00 itself
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise _fail(f"{show(value)}: a date and time in ISO 8601, e.g. 2026-12-24T08:00")


def _clock(value: Any) -> str:
    # YAML 1.1 reads an unquoted 22:00 as the sexagesimal number 1320 (minutes)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 24 * 60:
        return f"{value // 60:02d}:{value % 60:02d}"
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        return value.strip()
    raise _fail(f"{show(value)}: a time of day HH:MM, e.g. '22:00'")


Duration = Annotated[Any, BeforeValidator(_duration)]
EnvName = Annotated[Any, BeforeValidator(_env_name)]
Globs = Annotated[Any, BeforeValidator(_globs)]


class AlertMatchSpec(_Spec):
    """Which findings an alert rule sends (all given criteria must hold)."""

    what = ("match is a mapping of globs: {kind: [quiet, stuck], metric, beamline, target} "
            "and a minimum severity")
    noun = "match field"
    kind: Annotated[Any, BeforeValidator(_kinds)] = Field(
        None, description=f"a finding kind or a list of them: {list(_KINDS)}")
    metric: Globs = Field(None, description="a glob string or a list of globs "
                          "(queue_wait, transfer_rate, arrivals, products...)")
    beamline: Globs = Field(None, description="a glob string or a list of globs")
    target: Globs = Field(None, description="a glob string or a list of globs")
    severity: Literal["info", "warning", "critical"] = Field(
        "warning", description=f"the lowest severity sent, one of {list(_SEVERITIES)}")


class LogSpec(_Spec):
    """Send to the log (logger ``spotkit.alerts``)."""

    what = "log is a mapping, e.g. {level: warning} (or {} for the default)"
    noun = "log field"
    level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "warning", description="level is one of debug, info, warning, error, critical")


class EmailSpec(_Spec):
    """Send by e-mail through an SMTP server."""

    what = ("email is a mapping: {to: [...], from: address, host: smtp.example.org, port: 587, "
            "username_env: VAR, password_env: VAR}")
    noun = "email field"
    to: Annotated[Any, BeforeValidator(_addresses)] = Field(
        description="an e-mail address or a list of them")
    sender: str = Field(alias="from", pattern=r"^[^@\s]+@[^@\s]+$",
                        description="from is the sender's e-mail address")
    host: str = Field(min_length=1, description="host is the SMTP server's name")
    port: int = Field(587, ge=1, le=65535, description="port is an integer: 587 (STARTTLS), "
                      "465 (ssl: true) or 25")
    starttls: bool = Field(True, description="starttls is true/false (default true)")
    ssl: bool = Field(False, description="ssl is true/false (TLS from the start, port 465)")
    username_env: EnvName = Field(None, description="the name of the environment variable "
                                  "with the SMTP login")
    password_env: EnvName = Field(None, description="the name of the environment variable "
                                  "with the SMTP password")
    timeout: float = Field(10.0, gt=0, description="timeout is a number of seconds > 0")
    subject_prefix: str | None = Field(None, description="subject_prefix is text")

    @model_validator(mode="after")
    def _consistent(self) -> EmailSpec:
        if self.starttls and self.ssl:
            raise _fail("give starttls (port 587 or 25) or ssl (port 465), not both: write "
                        "starttls: false with ssl: true")
        if (self.username_env is None) != (self.password_env is None):
            raise _fail("give both username_env and password_env, or neither")
        return self


class WebhookSpec(_Spec):
    """Send an HTTP POST of JSON."""

    what = ("webhook is a mapping: {url_env: VAR} or {url: https://...}, and format: json or "
            "slack")
    noun = "webhook field"
    url: str | None = Field(None, pattern=r"^https?://", description="url starts with "
                            "http:// or https://")
    url_env: EnvName = Field(None, description="the name of the environment variable with "
                             "the URL (for URLs that hold a token)")
    format: Literal["json", "slack"] = Field("json", description="format is json (spotkit's "
                                             "findings) or slack (Slack/Mattermost {text})")
    timeout: float = Field(10.0, gt=0, description="timeout is a number of seconds > 0")

    @model_validator(mode="after")
    def _one_url(self) -> WebhookSpec:
        if (self.url is None) == (self.url_env is None):
            raise _fail("give url or url_env (one of them)")
        if self.url is not None and re.search(r"/hooks/|hooks\.slack\.com|/services/T",
                                              self.url):
            raise _fail("an incoming-webhook URL holds its secret token: set it in an "
                        "environment variable and name that with url_env")
        return self


class QuietSpec(_Spec):
    """A time in which an alert rule sends nothing."""

    what = ("a quiet period is {start: '22:00', end: '07:00'} (daily), {days: [sat, sun]}, "
            "both, or {begin: 2026-12-24T00:00, finish: 2027-01-04T00:00} (a window)")
    noun = "quiet field"
    start: Annotated[Any, BeforeValidator(_clock)] = Field(None, description="a time of "
                                                           "day HH:MM")
    end: Annotated[Any, BeforeValidator(_clock)] = Field(None, description="a time of day "
                                                         "HH:MM")
    days: list[str] | None = Field(None, description="a list of weekdays: mon, tue, wed, thu, "
                                   "fri, sat, sun")
    begin: Annotated[Any, BeforeValidator(_when)] = Field(None, description="a date and "
                                                          "time, ISO 8601")
    finish: Annotated[Any, BeforeValidator(_when)] = Field(None, description="a date and "
                                                           "time, ISO 8601")

    @model_validator(mode="after")
    def _valid(self) -> QuietSpec:
        from spotkit.monitor import QuietPeriod

        try:
            QuietPeriod(**self.model_dump(exclude_none=True))
        except ValueError as exc:
            raise _fail(str(exc)) from None
        return self


class AlertSpec(_Spec):
    """One alert rule: a match, one channel, de-duplication and quiet periods."""

    what = ("an alert is a mapping with 'name', 'match' and one of 'log', 'email' or "
            "'webhook' (and dedup, min_interval, quiet, timezone)")
    noun = "alert field"
    name: str = Field(min_length=1, pattern=r"^[^/]+$", description="every alert needs a "
                      "name: a non-empty string without '/'")
    description: str | None = Field(None, description="a description is text")
    match: AlertMatchSpec | None = None
    log: LogSpec | None = None
    email: EmailSpec | None = None
    webhook: WebhookSpec | None = None
    dedup: Duration = Field(3600.0, description="dedup is a duration (90s, 10m, 2h, 1d): the "
                            "same finding is sent once within it")
    min_interval: Duration = Field(0.0, description="min_interval is a duration (10m): the "
                                   "least time between two messages of this alert")
    timezone: str = Field("UTC", description="timezone is an IANA name (Europe/Berlin) for "
                          "the quiet hours")
    quiet: list[QuietSpec] | None = Field(None, description="a list of quiet periods")
    retry: Duration = Field(30.0, description="retry is a duration: the first wait after a "
                            "failed send (doubling up to 15 min)")

    @model_validator(mode="after")
    def _one_channel(self) -> AlertSpec:
        given = [c for c in _CHANNELS if getattr(self, c) is not None]
        if len(given) != 1:
            raise _fail(f"an alert sends through exactly one channel: one of {list(_CHANNELS)} "
                        f"(got {given or 'none'}); write two alerts for two channels")
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise _fail(f"unknown timezone {self.timezone!r}: an IANA name such as "
                        "'Europe/Berlin'") from None
        return self


# completed with the live section's models by spotkit.flows._rules_live (imported by
# check_document)
DocumentSpec.model_rebuild(_types_namespace={"AlertSpec": AlertSpec}, raise_errors=False)


def alert_canonical(spec: AlertSpec) -> dict[str, Any]:
    """The canonical form of an alert rule (durations in seconds, defaults filled)."""
    out = spec.model_dump(by_alias=True, exclude_none=True)
    for key in ("match", *_CHANNELS):
        if key in out:
            out[key] = {k: list(v) if isinstance(v, tuple) else v
                        for k, v in out[key].items()}
    out.setdefault("match", {"severity": "warning"})
    return out


def _channel(data: Mapping[str, Any]) -> Any:
    from spotkit.monitor import EmailChannel, LogChannel, WebhookChannel

    if "log" in data:
        return LogChannel(level=data["log"].get("level", "warning"))
    if "email" in data:
        e = dict(data["email"])
        return EmailChannel(to=tuple(e.pop("to")), sender=e.pop("from"), **e)
    return WebhookChannel(**dict(data["webhook"]))


def alert_rules(alerts: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
    """:class:`spotkit.monitor.AlertRule` objects from the canonical ``alerts`` section.

    Examples
    --------
    >>> rules = alert_rules([{"name": "ops", "match": {"kind": ["quiet"]}, "log": {},
    ...                       "dedup": 600.0}])
    >>> rules[0].name, rules[0].kind, rules[0].channel.kind
    ('ops', ('quiet',), 'log')
    """
    if not alerts:
        return ()
    from spotkit.monitor import AlertRule, QuietPeriod

    out = []
    for data in alerts:
        match = dict(data.get("match") or {})
        zone = data.get("timezone", "UTC")
        quiet = [QuietPeriod(**{**q, "timezone": zone}) for q in data.get("quiet") or ()]
        out.append(AlertRule(
            name=data["name"], channel=_channel(data), kind=match.get("kind"),
            metric=match.get("metric"), beamline=match.get("beamline"),
            target=match.get("target"), severity=match.get("severity", "warning"),
            dedup=float(data.get("dedup", 3600.0)),
            min_interval=float(data.get("min_interval", 0.0)), quiet=quiet,
            retry=Backoff(first=float(data.get("retry", 30.0)), factor=2.0, maximum=900.0)))
    return tuple(out)


def check_alert_names(data: Any) -> list[Finding]:
    """Alert rule names given twice (each alert's state is kept under its name)."""
    alerts = data.get("alerts") if isinstance(data, Mapping) else None
    if not isinstance(alerts, list):
        return []
    seen: dict[str, int] = {}
    out = []
    for i, alert in enumerate(alerts):
        name = alert.get("name") if isinstance(alert, Mapping) else None
        if isinstance(name, str) and name in seen:
            out.append(Finding(("alerts", i, "name"), f"alert name {name!r} is already used by "
                               f"alert {seen[name]}; give each alert its own name"))
        elif isinstance(name, str):
            seen[name] = i
    return out
