"""Alerts: real e-mail through a local SMTP server (STARTTLS + login), real webhook POSTs to
a local HTTP server, de-duplication, quiet periods and minimum intervals on a fake clock,
channel failures retried with back-off, and the state kept across a restart."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from spotkit.catalog import open_catalog
from spotkit.monitor import (
    AlertRule,
    Alerts,
    EmailChannel,
    Finding,
    LogChannel,
    NotifyError,
    QuietPeriod,
    WebhookChannel,
    parse_duration,
)

T = 1_796_000_000.0  # Monday 2026-11-30 (UTC), 10:13


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def finding(kind="quiet", beamline="8.3.2", severity="warning", **kw):
    kw.setdefault("metric", "arrivals")
    kw.setdefault("time", T)
    kw.setdefault("message", f"beamline {beamline} has sent nothing for 12 min")
    return Finding(kind, severity=severity, beamline=beamline, **kw)


class Recorder:
    """A channel that records what it was asked to send (and can be told to fail)."""

    kind = "record"

    def __init__(self):
        self.sent: list[list[Finding]] = []
        self.fail: Exception | None = None

    def send(self, findings, *, rule):
        if self.fail is not None:
            raise self.fail
        self.sent.append(list(findings))


# -- real servers ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and a client context that trusts it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spotkit test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                 x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    client = ssl.create_default_context(cafile=str(folder / "cert.pem"))
    return server, client


@pytest.fixture
def smtp_server(tls):
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that requires STARTTLS and a login
    (alerts / s3cret), and keeps the messages it receives."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    received: list[dict] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                             "data": envelope.content, "tls": session.ssl is not None,
                             "login": session.authenticated})
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"alerts"
              and auth_data.password == b"s3cret")
        return AuthResult(success=ok, handled=False)

    port = _free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port,
                            tls_context=tls[0], require_starttls=True,
                            authenticator=authenticator, auth_required=True,
                            auth_require_tls=True, server_hostname="localhost")
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


@pytest.fixture
def webhook_server():
    """A real HTTP server on 127.0.0.1 that records JSON POSTs; answers with the status in
    ``state["status"]`` (200 by default)."""
    state: dict = {"status": 200, "posts": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state["posts"].append({"path": self.path, "json": json.loads(body),
                                   "type": self.headers["Content-Type"]})
            self.send_response(state["status"])
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- e-mail ---------------------------------------------------------------------------------------


def test_email_through_a_real_smtp_server_with_starttls_and_login(smtp_server, tls,
                                                                  monkeypatch):
    port, received = smtp_server
    monkeypatch.setenv("TEST_SMTP_USER", "alerts")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    channel = EmailChannel(to=["ops@example.org", "bl832@example.org"],
                           sender="spotkit@example.org", host="127.0.0.1", port=port,
                           username_env="TEST_SMTP_USER", password_env="TEST_SMTP_PASSWORD",
                           context=tls[1])
    alerts = Alerts([AlertRule("ops-mail", channel)], clock=Clock())
    (delivery,) = alerts.dispatch([finding(), finding(kind="gap", metric="scan_number",
                                                      message="scan 42 is missing")])
    assert delivery.ok
    (mail,) = received
    assert mail["tls"]
    assert mail["login"]
    assert mail["to"] == ["ops@example.org", "bl832@example.org"]
    assert mail["from"] == "spotkit@example.org"
    msg = email.message_from_bytes(mail["data"], policy=email.policy.default)
    assert msg["Subject"] == "[spotkit] warning: quiet at 8.3.2 and 1 more (ops-mail)"
    body = msg.get_body(("plain",)).get_content()
    assert "has sent nothing for 12 min" in body
    assert "scan 42 is missing" in body
    (attachment,) = list(msg.iter_attachments())
    data = json.loads(attachment.get_content())
    assert [f["kind"] for f in data] == ["quiet", "gap"]
    alerts.close()


def test_email_failures_are_logged_and_retried_never_raised(smtp_server, tls, monkeypatch,
                                                             caplog):
    port, received = smtp_server
    monkeypatch.setenv("TEST_SMTP_USER", "alerts")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
    channel = EmailChannel(to=["ops@example.org"], sender="spotkit@example.org",
                           host="127.0.0.1", port=port, username_env="TEST_SMTP_USER",
                           password_env="TEST_SMTP_PASSWORD", context=tls[1])
    clock = Clock()
    alerts = Alerts([AlertRule("ops", channel)], clock=clock)
    with caplog.at_level(logging.WARNING, logger="spotkit.monitor"):
        (d,) = alerts.dispatch([finding()])
    assert not d.ok
    assert "535" in d.error
    assert "trying again in 30 s" in caplog.text
    assert not received
    assert alerts.dispatch([finding()], clock.advance(10)) == []  # backing off
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    (d,) = alerts.dispatch([finding()], clock.advance(25))
    assert d.ok
    assert len(received) == 1
    assert alerts.counts() == {("ops", "failed"): 1, ("ops", "ok"): 1}
    # a variable that is not set, and a server that is not there
    monkeypatch.delenv("TEST_SMTP_USER")
    with pytest.raises(NotifyError, match="TEST_SMTP_USER is not set"):
        channel.send([finding()], rule="x")
    gone = EmailChannel(to=["a@b.c"], sender="s@b.c", host="127.0.0.1", port=_free_port(),
                        timeout=2)
    with pytest.raises(NotifyError, match="failed"):
        gone.send([finding()], rule="x")
    alerts.close()


def test_email_refuses_a_server_without_starttls():
    """Credentials never go over a plain connection: a server that offers no STARTTLS is
    refused unless the rule says starttls: false."""
    from aiosmtpd.controller import Controller

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope.content)
            return "250 OK"

    port = _free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        strict = EmailChannel(to=["a@b.c"], sender="s@b.c", host="127.0.0.1", port=port)
        with pytest.raises(NotifyError, match="does not offer STARTTLS"):
            strict.send([finding()], rule="x")
        assert received == []
        plain = EmailChannel(to=["a@b.c"], sender="s@b.c", host="127.0.0.1", port=port,
                             starttls=False)
        plain.send([finding()], rule="x")
        assert len(received) == 1
    finally:
        controller.stop()


def test_email_channel_checks_its_settings():
    with pytest.raises(ValueError, match="not both"):
        EmailChannel(to=["a@b.c"], sender="s@b.c", host="h", starttls=True, ssl=True)
    with pytest.raises(ValueError, match="both username_env and password_env"):
        EmailChannel(to=["a@b.c"], sender="s@b.c", host="h", username_env="U")
    with pytest.raises(ValueError, match="addresses"):
        EmailChannel(to=["nobody"], sender="s@b.c", host="h")


# -- webhooks -------------------------------------------------------------------------------------


def test_webhook_posts_json_and_slack_text(webhook_server, monkeypatch):
    url, state = webhook_server
    monkeypatch.setenv("TEST_HOOK_URL", url + "/hooks/abc")
    rules = [AlertRule("json", WebhookChannel(url=url + "/spotkit")),
             AlertRule("chat", WebhookChannel(url_env="TEST_HOOK_URL", format="slack"))]
    alerts = Alerts(rules, clock=Clock())
    assert [d.ok for d in alerts.dispatch([finding(severity="critical")])] == [True, True]
    by_path = {p["path"]: p for p in state["posts"]}
    posted = by_path["/spotkit"]["json"]
    assert posted["rule"] == "json"
    assert posted["findings"][0]["beamline"] == "8.3.2"
    assert posted["findings"][0]["severity"] == "critical"
    assert by_path["/spotkit"]["type"] == "application/json"
    slack = by_path["/hooks/abc"]["json"]
    assert set(slack) == {"text"}
    assert slack["text"].startswith("*[spotkit] critical: quiet at 8.3.2 (chat)*\n- [critical]")
    alerts.close()


def test_webhook_errors_are_retried_with_backoff(webhook_server, caplog):
    url, state = webhook_server
    state["status"] = 503
    clock = Clock()
    rule = AlertRule("hook", WebhookChannel(url=url), retry=parse_backoff(10))
    alerts = Alerts([rule], clock=clock)
    with caplog.at_level(logging.WARNING, logger="spotkit.monitor"):
        (d,) = alerts.dispatch([finding()])
    assert not d.ok
    assert "HTTP 503" in d.error
    assert "webhook channel failed" in caplog.text
    assert alerts.pending("hook") == [finding()]
    assert alerts.dispatch([], clock.advance(5)) == []  # first wait: 10 s
    (d,) = alerts.dispatch([], clock.advance(6))
    assert not d.ok  # second failure: now 20 s
    assert alerts.dispatch([], clock.advance(15)) == []
    state["status"] = 200
    (d,) = alerts.dispatch([], clock.advance(6))
    assert d.ok
    assert alerts.pending() == []
    assert len(state["posts"]) == 3
    # a webhook that is not there
    with pytest.raises(NotifyError, match="failed"):
        WebhookChannel(url=f"http://127.0.0.1:{_free_port()}/x", timeout=2).send(
            [finding()], rule="x")
    alerts.close()


def parse_backoff(first):
    from spotkit.backoff import Backoff

    return Backoff(first=first, factor=2.0, maximum=600.0)


def test_a_broken_channel_never_stops_the_others(caplog):
    broken, good = Recorder(), Recorder()
    broken.fail = RuntimeError("a plug-in bug")
    alerts = Alerts([AlertRule("broken", broken), AlertRule("good", good)], clock=Clock())
    with caplog.at_level(logging.ERROR, logger="spotkit.monitor"):
        deliveries = alerts.dispatch([finding()])
    assert [(d.rule, d.ok) for d in deliveries] == [("broken", False), ("good", True)]
    assert "a plug-in bug" in caplog.text
    assert len(good.sent) == 1


# -- de-duplication, quiet periods, minimum interval ----------------------------------------------


def test_same_finding_sent_once_per_dedup_window():
    rec, clock = Recorder(), Clock()
    alerts = Alerts([AlertRule("r", rec, dedup=3600)], clock=clock)
    alerts.dispatch([finding()])
    for _ in range(10):  # the detector re-reports the lasting silence every 30 s
        assert alerts.dispatch([finding(time=clock.advance(30))]) == []
    assert len(rec.sent) == 1
    # another beamline is another finding
    alerts.dispatch([finding(beamline="7.3.3")])
    assert len(rec.sent) == 2
    # more severe within the window: sent again
    alerts.dispatch([finding(severity="critical")], clock.advance(60))
    assert [f.severity for f in rec.sent[-1]] == ["critical"]
    # after the window: sent again
    alerts.dispatch([finding(severity="critical")], clock.advance(3600))
    assert len(rec.sent) == 4


def test_rules_select_by_kind_metric_beamline_target_and_severity():
    rec = Recorder()
    rule = AlertRule("r", rec, kind=["quiet", "stu*"], beamline="8.3.*", severity="warning")
    alerts = Alerts([rule], clock=Clock())
    alerts.dispatch([finding(), finding(kind="gap"), finding(beamline="7.3.3"),
                     finding(severity="info"), finding(kind="stuck", metric="run_time")])
    assert sorted(f.kind for f in rec.sent[0]) == ["quiet", "stuck"]
    assert not AlertRule("t", rec, target="perl*").selects(finding())  # no target: no match


def test_quiet_period_holds_findings_until_it_ends():
    rec = Recorder()
    night = QuietPeriod(start="22:00", end="07:00", timezone="Europe/Berlin")
    clock = Clock(QuietPeriod.epoch("2026-12-04T23:00:00+01:00"))  # Friday 23:00 in Berlin
    alerts = Alerts([AlertRule("r", rec, quiet=[night])], clock=clock)
    assert alerts.dispatch([finding()]) == []
    assert alerts.dispatch([finding(kind="gap", metric="scan_number")],
                           clock.advance(3600)) == []
    assert len(alerts.pending("r")) == 2
    clock.now = QuietPeriod.epoch("2026-12-05T07:00:00+01:00")
    (d,) = alerts.dispatch([])
    assert d.ok
    assert [f.kind for f in rec.sent[0]] == ["quiet", "gap"]


def test_quiet_periods_days_and_windows():
    weekend = QuietPeriod(days=["sat", "sun"])
    assert weekend.contains(QuietPeriod.epoch("2026-12-06T23:59Z"))
    assert not weekend.contains(QuietPeriod.epoch("2026-12-07T00:00Z"))
    maintenance = QuietPeriod(start="08:00", end="12:00", days=["tue"])
    assert maintenance.contains(QuietPeriod.epoch("2026-12-08T09:00Z"))
    assert not maintenance.contains(QuietPeriod.epoch("2026-12-09T09:00Z"))
    # over midnight, only from Friday night: Saturday 03:00 is in, Sunday 03:00 is not
    friday_night = QuietPeriod(start="22:00", end="06:00", days=["fri"])
    assert friday_night.contains(QuietPeriod.epoch("2026-12-05T03:00Z"))
    assert not friday_night.contains(QuietPeriod.epoch("2026-12-06T03:00Z"))
    shutdown = QuietPeriod(begin="2026-12-24", finish="2027-01-04T00:00Z")
    assert shutdown.contains(QuietPeriod.epoch("2026-12-31T12:00Z"))
    assert "2026-12-24 00:00 to 2027-01-04 00:00 UTC" == shutdown.describe()
    with pytest.raises(ValueError, match="timezone"):
        QuietPeriod(days=["sat"], timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="not both"):
        QuietPeriod(days=["sat"], begin="2026-12-24", finish="2026-12-25")
    with pytest.raises(ValueError, match="HH:MM"):
        QuietPeriod(start="late", end="07:00")


def test_minimum_interval_batches_what_comes_in_between():
    rec, clock = Recorder(), Clock()
    alerts = Alerts([AlertRule("r", rec, min_interval=600)], clock=clock)
    alerts.dispatch([finding()])
    assert alerts.dispatch([finding(beamline="7.3.3")], clock.advance(60)) == []
    assert alerts.dispatch([finding(beamline="12.3.1")], clock.advance(60)) == []
    (d,) = alerts.dispatch([], clock.advance(480))
    assert d.ok
    assert [f.beamline for f in rec.sent[1]] == ["7.3.3", "12.3.1"]


def test_parse_duration():
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration("10min") == 600
    assert parse_duration(2.5) == 2.5
    for bad in ("soon", "-5", "10 parsecs", True):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


# -- state across a restart -----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_db(request, tmp_path):
    """A catalog database: a SQLite file, or a database on the tests' PostgreSQL server."""
    if request.param == "sqlite":
        db = tmp_path / "catalog.db"
        open_catalog(db).close()
        yield db
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database("alerts")
    open_catalog(url).close()
    yield url
    server.drop_database(url)


def test_state_survives_a_restart_no_double_alert(catalog_db):
    db = catalog_db
    rec, clock = Recorder(), Clock()
    rules = [AlertRule("r", rec, dedup=3600, quiet=[QuietPeriod(begin=T + 1000,
                                                                 finish=T + 2000)])]
    first = Alerts(rules, state=db, clock=clock)
    first.dispatch([finding()])
    first.dispatch([finding(beamline="7.3.3")], clock.advance(1200))  # held: quiet window
    first.close()  # the watcher is restarted
    second = Alerts(rules, state=db, clock=clock)
    assert second.dispatch([finding()], clock.advance(60)) == []  # already sent: not again
    assert [f.beamline for f in second.pending("r")] == ["7.3.3"]  # still waiting
    (d,) = second.dispatch([], clock.advance(1000))  # the window is over
    assert d.ok
    assert [f.beamline for f in rec.sent[1]] == ["7.3.3"]
    assert second.counts() == {("r", "ok"): 2}
    assert [h["findings"] for h in second.history()] == [1, 1]
    second.close()
    # a third watcher after the dedup window: the lasting condition is sent again
    third = Alerts(rules, state=db, clock=clock)
    (d,) = third.dispatch([finding()], clock.advance(3600))
    assert d.ok
    assert third.counts() == {("r", "ok"): 3}
    third.close()


def test_log_channel_and_repeated_rule_names(caplog):
    with caplog.at_level(logging.INFO, logger="spotkit.alerts"):
        LogChannel(level="info").send([finding()], rule="ops")
    assert "alert=ops kind=quiet severity=warning beamline 8.3.2" in caplog.text
    with pytest.raises(ValueError, match="names repeat"):
        Alerts([AlertRule("a", LogChannel()), AlertRule("a", LogChannel())])
    with pytest.raises(ValueError, match="log level"):
        LogChannel(level="loud")


def test_two_watchers_on_one_catalog_send_once(tmp_path):
    """Each sender claims the pending findings in a write transaction before it sends; a
    claim of a sender that died is taken over after CLAIM_SECONDS."""
    from spotkit.monitor._alerts import CLAIM_SECONDS

    db = tmp_path / "catalog.db"
    open_catalog(db).close()
    clock = Clock()
    second_sent: list = []

    class SlowChannel(Recorder):
        def send(self, findings, *, rule):
            # while this watcher is sending, the other one checks the same finding
            second_sent.extend(other.dispatch([finding()], clock.now))
            super().send(findings, rule=rule)

    first_channel, second_channel = SlowChannel(), Recorder()
    one = Alerts([AlertRule("r", first_channel)], state=db, clock=clock)
    other = Alerts([AlertRule("r", second_channel)], state=db, clock=clock)
    (d,) = one.dispatch([finding()])
    assert d.ok
    assert second_sent == []
    assert second_channel.sent == []
    assert len(first_channel.sent) == 1
    # a watcher that claimed a finding and died before sending it
    one._take(one.rules[0], [finding(beamline="7.3.3")], clock.now)
    assert one._claim(one.rules[0], clock.now)
    one.close()
    assert other.dispatch([], clock.advance(10)) == []
    (d,) = other.dispatch([], clock.advance(CLAIM_SECONDS))
    assert d.ok
    assert [f.beamline for f in second_channel.sent[0]] == ["7.3.3"]
    other.close()
