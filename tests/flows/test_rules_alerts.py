"""The ``alerts:`` section of rules.yaml: validated with the rest of the file (line, alert,
field, did-you-mean), secrets refused, built into spotkit.monitor alert rules."""

from __future__ import annotations

import textwrap

import pytest

from spotkit.errors import RulesError
from spotkit.flows import load_rules
from spotkit.monitor import AlertRule, EmailChannel, LogChannel, QuietPeriod, WebhookChannel

HEAD = """\
targets: {local: {kind: local, max_workers: 1}}
rules:
  - name: saxs
    match: {kind: saxs/raw}
    actions: [{name: quick, notebook: saxs_quicklook, target: local}]
"""

GOOD = HEAD + """\
alerts:
  - name: beamline-silent
    description: the beamline scientists want to know at once
    match: {kind: [quiet, gap], beamline: "8.3.*", severity: warning}
    email:
      to: [ops@example.org]
      from: spotkit@example.org
      host: smtp.example.org
      port: 587
      username_env: SPOTKIT_SMTP_USER
      password_env: SPOTKIT_SMTP_PASSWORD
    dedup: 2h
    min_interval: 10m
    timezone: America/Los_Angeles
    quiet:
      - {start: 22:00, end: "07:00"}
      - {days: [sat, sun]}
      - {begin: 2026-12-24, finish: 2027-01-04T00:00}
  - name: chat
    match: {kind: [stuck, missing, change], severity: info}
    webhook: {url_env: SPOTKIT_MATTERMOST_URL, format: slack}
  - name: everything
    log: {level: info}
"""


def write(tmp_path, text):
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path, text):
    with pytest.raises(RulesError) as info:
        load_rules(write(tmp_path, text))
    return info.value.problems


def test_alerts_section_builds_monitor_alert_rules(tmp_path):
    rules = load_rules(write(tmp_path, GOOD))
    mail, chat, everything = rules.alerts
    assert isinstance(mail, AlertRule)
    assert (mail.name, mail.kind, mail.beamline, mail.severity) == (
        "beamline-silent", ("quiet", "gap"), ("8.3.*",), "warning")
    assert (mail.dedup, mail.min_interval) == (7200.0, 600.0)
    assert mail.channel == EmailChannel(to=("ops@example.org",), sender="spotkit@example.org",
                                        host="smtp.example.org", port=587,
                                        username_env="SPOTKIT_SMTP_USER",
                                        password_env="SPOTKIT_SMTP_PASSWORD")
    night, weekend, shutdown = mail.quiet
    assert night == QuietPeriod(start="22:00", end="07:00", timezone="America/Los_Angeles")
    assert weekend.days == ("sat", "sun")
    assert shutdown.contains(QuietPeriod.epoch("2026-12-31T12:00Z"))
    assert chat.channel == WebhookChannel(url_env="SPOTKIT_MATTERMOST_URL", format="slack")
    assert chat.severity == "info"
    assert everything.channel == LogChannel(level="info")
    assert everything.kind is None
    # the canonical form gives the same rules back, and is part of the rules' version
    again = load_rules(rules.to_dict())
    assert again == rules
    assert again.alerts == rules.alerts
    plain = load_rules(HEAD)
    assert plain.alerts == ()
    assert "alerts" not in plain.to_dict()
    assert plain.version != rules.version


def test_alert_errors_name_file_line_alert_and_field(tmp_path):
    found = problems(tmp_path, HEAD + """\
alerts:
  - name: ops
    match: {kind: [quiet, gaps], severty: warning}
    email:
      to: ops@example.org
      from: spotkit@example.org
      host: smtp.example.org
      prot: 587
    dedup: 2 hours
  - name: hook
    webhook: {url: "https://hooks.slack.com/services/T000/B000/XXXX"}
  - name: ops
    log: {level: loud}
  - name: two
    log: {}
    webhook: {url_env: HOOK}
""")
    text = {(p.line, p.rule, p.field): p.message for p in found}
    assert all(p.file == str(tmp_path / "rules.yaml") for p in found)
    assert "unknown finding kind 'gaps' (did you mean 'gap'?)" in text[
        (8, "alert 0 'ops'", "match.kind")]
    assert "unknown match field 'severty' (did you mean 'severity'?)" in text[
        (8, "alert 0 'ops'", "match.severty")]
    assert "unknown email field 'prot' (did you mean 'port'?)" in text[
        (13, "alert 0 'ops'", "email.prot")]
    assert "duration '2 hours'" in text[(14, "alert 0 'ops'", "dedup")]
    assert "url_env" in text[(16, "alert 1 'hook'", "webhook")]
    assert "'loud'" in text[(18, "alert 2 'ops'", "log.level")]
    assert "already used by alert 0" in text[(17, "alert 2 'ops'", "name")]
    assert "exactly one channel" in text[(19, "alert 3 'two'", None)]
    # the whole message says where
    with pytest.raises(RulesError, match=r"line 13, alert 0 'ops', field 'email.prot'"):
        load_rules(write(tmp_path, HEAD + """\
alerts:
  - name: ops
    match: {kind: [quiet, gaps], severty: warning}
    email:
      to: ops@example.org
      from: spotkit@example.org
      host: smtp.example.org
      prot: 587
"""))


def test_kinds_of_other_detectors_are_allowed():
    rules = load_rules(HEAD + """\
alerts:
  - {name: own, match: {kind: [vacuum, "qual*"]}, log: {}}
""")
    assert rules.alerts[0].kind == ("vacuum", "qual*")


def test_credentials_never_in_the_file(tmp_path):
    found = problems(tmp_path, HEAD + """\
alerts:
  - name: ops
    email:
      to: ops@example.org
      from: spotkit@example.org
      host: smtp.example.org
      password: hunter2
      username_env: SMTP_USER
      password_env: "my secret pass"
""")
    text = {p.field: p.message for p in found}
    assert "looks like a secret" in text["email.password"]
    assert "hunter2" not in str(found)
    # a value that is no variable name may be the password itself: refused, not echoed
    assert "looks like a secret" in text["email.password_env"]
    assert "my secret pass" not in str(found)
    found = problems(tmp_path, HEAD + """\
alerts:
  - {name: ops, webhook: {url_env: "https://example.org/hook"}}
""")
    assert "NAME of an environment variable" in found[0].message


def test_quiet_and_channel_settings_are_checked(tmp_path):
    found = problems(tmp_path, HEAD + """\
alerts:
  - name: ops
    timezone: Mars/Olympus
    webhook: {url_env: HOOK, format: slak}
    quiet:
      - {start: "22:00"}
      - {begin: 2026-12-24, finish: 2026-12-20}
      - {days: [caturday]}
      - {start: 22:00, end: 07:00, begin: 2026-12-24, finish: 2026-12-25}
      - {strat: "22:00", end: "07:00"}
""")
    text = {p.field: p.message for p in found}
    assert "'slak'" in text["webhook.format"]
    assert "slack" in text["webhook.format"]
    assert "both start and end" in text["quiet.0"]
    assert "ends (2026-12-20) before it begins" in text["quiet.1"]
    assert "caturday" in text["quiet.2"]
    assert "not both" in text["quiet.3"]
    assert "unknown quiet field 'strat' (did you mean 'start'?)" in text["quiet.4.strat"]
    found = problems(tmp_path, HEAD + """\
alerts:
  - {name: ops, timezone: Mars/Olympus, log: {}}
  - {name: mail, email: {to: a@b.c, from: s@b.c, host: h, starttls: true, ssl: true}}
  - {name: half, email: {to: a@b.c, from: s@b.c, host: h, username_env: U}}
  - {name: nobody, email: {to: nobody, from: s@b.c, host: h}}
""")
    messages = [p.message for p in found]
    assert any("unknown timezone 'Mars/Olympus'" in m for m in messages)
    assert any("not both" in m for m in messages)
    assert any("both username_env and password_env" in m for m in messages)
    assert any("'nobody': an e-mail address" in m for m in messages)
