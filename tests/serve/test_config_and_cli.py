"""serve.yaml validation, the query translation, and the `spotkit serve` commands."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from tiled.queries import Comparison, Contains, Eq, FullText, In, QueryValueError, Regex

from spotkit.cli import main
from spotkit.serve import ServeConfigError, load_config, parse_config
from spotkit.serve._query import Criteria, ProposalAccess


# ---------------------------------------------------------------- configuration
@pytest.mark.parametrize(("data", "field", "words"), [
    ({"staf": ["a"]}, "staf", "unknown field"),
    ({"staff": "alice"}, "staff", "list of names"),
    ({"users": ["bob"]}, "users", "map each user"),
    ({"users": {"bob": "P-1"}}, "users.bob", "list of names"),
    ({"users": {"bob": [None]}}, "users.bob", "non-empty"),
    ({"authentication": {"database": "auth.db"}}, "authentication.database", "SQLAlchemy URL"),
    ({"authentication": {"secret": 1}}, "authentication.secret", "unknown field"),
    ({"authentication": {"providers": [{"provider": "x"}]}}, "authentication.providers[0]",
     "authenticator"),
    ({"authentication": {"providers": [{"provider": "spotkit", "authenticator": "a:b"}]}},
     "authentication.providers[0].provider", "reserved"),
    ({"authentication": {"access_token_max_age": -5}}, "authentication.access_token_max_age",
     "positive"),
    ({"authentication": {"providers": [
        {"provider": "f", "authenticator": "tiled.authenticators:ProxiedOIDCAuthenticator"}]}},
     "authentication.providers[0].authenticator", "use tiled.authenticators:OIDCAuthenticator"),
    ([1, 2], "(top level)", "mapping"),
])
def test_config_errors_name_the_file_and_field(tmp_path, data, field, words):
    import yaml

    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ServeConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path.absolute()}: {field}: ")
    assert words in message


def test_config_file_problems(tmp_path):
    with pytest.raises(ServeConfigError, match=r"missing\.yaml: \(file\): cannot be read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("staff: [a\n")
    with pytest.raises(ServeConfigError, match="not valid YAML"):
        load_config(bad)


def test_secret_keys_file_must_be_private_and_long(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("x" * 64 + "\n")
    secret.chmod(0o644)
    cfg = parse_config({"authentication": {"secret_keys_file": "secret"}}, tmp_path / "s.yaml")
    with pytest.raises(ServeConfigError, match="chmod 600"):
        cfg.secret_keys()
    secret.chmod(0o600)
    assert cfg.secret_keys() == ["x" * 64]
    secret.write_text("short\n")
    with pytest.raises(ServeConfigError, match="at least 32"):
        cfg.secret_keys()


def test_config_membership():
    cfg = parse_config({"staff": ["sam"], "users": {"ann": ["P-A", 123], "bob": None}})
    assert cfg.proposals_of("sam") is None
    assert cfg.proposals_of("ann") == {"P-A", "123"}
    assert cfg.proposals_of("bob") == frozenset()
    assert cfg.proposals_of("nobody") == frozenset()


# ---------------------------------------------------------------- queries -> catalog.search
def test_criteria_translate_to_one_catalog_search():
    c = (Criteria().add(Eq("beamline", "8.3.2")).add(In("kind", ["tomo/raw", "saxs/raw"]))
         .add(Contains("sample", "ly*so")).add(FullText("lysozyme  ring"))
         .add(Comparison("ge", "start_time", "2026-01-01T00:00:00Z"))
         .add(Comparison("lt", "start_time", 1.8e9)))
    kw = c.search_kwargs()
    assert kw["beamline"] == ["8.3.2"]
    assert kw["kind"] == ["tomo/raw", "saxs/raw"]
    assert kw["sample"] == ["*ly[*]so*"]
    assert kw["text"] == "lysozyme ring"
    assert kw["since"].year == 2026
    assert kw["until"].timestamp() == pytest.approx(1.8e9 - 1e-6)


def test_access_is_intersected_with_the_users_own_proposal_query():
    mine = ProposalAccess(frozenset({"P-A", "P-C"}))
    assert Criteria().add(mine).search_kwargs()["proposal"] == ["P-A", "P-C"]
    assert Criteria().add(mine).add(Eq("proposal", "P-B")).search_kwargs()["proposal"] == []
    assert Criteria().add(Eq("proposal", "P-*")).add(mine).search_kwargs()["proposal"] == [
        "P-A", "P-C"]
    assert Criteria().add(mine).add(In("proposal", ["P-C", "P-B"])).search_kwargs()[
        "proposal"] == ["P-C"]
    assert Criteria().add(mine).add(Eq("proposal", "P-B")).empty
    assert Criteria().add(ProposalAccess(None)).search_kwargs() == {}


@pytest.mark.parametrize("query", [Regex("sample", ".*"), Eq("energy", 1),
                                   Eq("sample", ["a"]), Comparison("ge", "end_time", 0),
                                   Comparison("ge", "start_time", "yesterday"),
                                   In("kind", ["x"] * 501)])
def test_unsupported_queries_are_refused(query):
    with pytest.raises(QueryValueError):
        Criteria().add(query)


# ---------------------------------------------------------------- commands
@pytest.fixture
def setup(tmp_path, capsys):
    from spotkit.catalog import open_catalog
    from spotkit.sim import simulate_tomo_scan

    simulate_tomo_scan(tmp_path / "a.h5", shape=(8, 2, 32), seed=0, proposal="P-A")
    with open_catalog(tmp_path / "catalog.db") as cat:
        ds = cat.ingest(tmp_path / "a.h5")
    (tmp_path / "serve.yaml").write_text("staff: [sam]\nusers:\n  ann: [P-A]\n")
    return tmp_path, ds.id


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_create_list_revoke(setup, capsys):
    work, _ = setup
    common = ["--catalog", work / "catalog.db", "--config", work / "serve.yaml"]
    code, out, err = run(capsys, "serve", "keys", "create", "ann", *common, "--note", "beamtime",
                         "--expires", "30d")
    assert code == 0, err
    key = out.strip()
    assert len(key) == 72
    assert "shown only now" in err
    assert (work / "catalog.db.serve-auth.db").exists()
    code, out, err = run(capsys, "serve", "keys", "list", *common)
    assert code == 0, err
    assert "ann" in out
    assert key[:8] in out
    assert key[8:] not in out
    assert "beamtime" in out
    code, out, err = run(capsys, "serve", "keys", "revoke", "ann", *common)
    assert (code, out.strip()) == (0, "revoked 1 API key of ann")
    code, out, err = run(capsys, "serve", "keys", "revoke", "ann", *common)
    assert code == 1
    assert "no API key of 'ann'" in err


def test_serve_command_errors(setup, capsys):
    work, _ = setup
    code, _, err = run(capsys, "serve", "--catalog", work / "catalog.db")
    assert code == 1
    assert "needs --config" in err
    (work / "bad.yaml").write_text("users: {ann: P-A}\n")
    code, _, err = run(capsys, "serve", "--catalog", work / "catalog.db", "--config",
                       work / "bad.yaml")
    assert code == 1
    assert "bad.yaml: users.ann: must be a list" in err
    code, _, err = run(capsys, "serve", "--catalog", work / "none.db", "--config",
                       work / "serve.yaml")
    assert code == 1
    assert "no catalog at" in err
    code, _, err = run(capsys, "serve", "--config", work / "serve.yaml", "--port", "99999")
    assert code == 2
    assert "port number" in err


@pytest.mark.slow
def test_spotkit_serve_runs_a_server(setup, capsys):
    work, ds_id = setup
    common = ["--catalog", work / "catalog.db", "--config", work / "serve.yaml"]
    _code, out, _ = run(capsys, "serve", "keys", "create", "ann", *common)
    key = out.strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "spotkit.cli", "serve", *map(str, common), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/", timeout=2).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert httpx.get(f"{url}/search/", timeout=10).status_code == 401
        r = httpx.get(f"{url}/search/", params={"api_key": key}, timeout=10)
        assert [d["id"] for d in r.json()["data"]] == [ds_id]
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert "/search/" in output
    assert key not in output
    assert "api_key=[redacted]" in output
