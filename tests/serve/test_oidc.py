"""OIDC login in `spotkit serve`, against a fake identity provider written here.

The provider (a real HTTP server in a thread) serves the discovery document
(/.well-known/openid-configuration), its JWKS (an RSA key made for the test), an
authorization endpoint that "logs in" whoever the test says is at the browser and sends
the browser back with a one-time code, and a token endpoint that checks the client, the
code and the redirect address and answers an id token signed with that key. `spotkit
serve` (a process of its own) runs with Tiled's OIDCAuthenticator configured in serve.yaml;
the tests drive the authorization-code flow as a browser would and check what the tokens
it ends with may see.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

pytest.importorskip("tiled.server")
jwt = pytest.importorskip("jwt")
rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")

CLIENT_ID = "spotkit-serve"
CLIENT_SECRET = "client-secret-" + "7" * 24
AUDIENCE = "spotkit-serve"
KID = "test-key-1"
#: seconds the provider has to answer each call of spotkit serve (serve.yaml `timeout`)
PROVIDER_TIMEOUT = 4.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


@dataclass
class FakeProvider:
    """An OpenID provider: discovery, JWKS, authorize (the browser's login) and token."""

    port: int
    key: object = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    other_key: object = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    #: who is logged in at the provider (the browser's session there)
    user: str | None = None
    #: how the next id token is made: ok, expired, wrong-key, wrong-audience, wrong-issuer
    mode: str = "ok"
    #: seconds the token endpoint waits before it answers (a slow provider)
    token_delay: float = 0.0
    codes: dict = field(default_factory=dict)
    requests: list = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def discovery(self) -> dict:
        return {"issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "device_authorization_endpoint": f"{self.issuer}/device",
                "end_session_endpoint": f"{self.issuer}/logout",
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"]}

    def jwks(self) -> dict:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": KID, "use": "sig", "alg": "RS256"}]}

    def id_token(self, user: str, access_token: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": AUDIENCE, "sub": user, "iat": now,
                  "exp": now + 300, "at_hash": _at_hash(access_token),
                  "preferred_username": user}
        key = self.key
        if self.mode == "expired":
            claims.update(iat=now - 3600, exp=now - 1800)
        elif self.mode == "wrong-key":  # same kid, another key: a forged signature
            key = self.other_key
        elif self.mode == "wrong-audience":
            claims["aud"] = "some-other-service"
        elif self.mode == "wrong-issuer":
            claims["iss"] = "http://evil.example.org"
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})


def _handler(idp: FakeProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            # the caller may have given up on a slow answer (token_delay past its timeout)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            idp.requests.append(("GET", url.path, query))
            if url.path == "/.well-known/openid-configuration":
                return self._json(200, idp.discovery())
            if url.path == "/jwks":
                return self._json(200, idp.jwks())
            if url.path == "/authorize":
                if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
                    return self._json(400, {"error": "invalid_request"})
                if idp.user is None:
                    return self._json(401, {"error": "login_required"})
                code = secrets.token_urlsafe(16)
                idp.codes[code] = (idp.user, query["redirect_uri"])
                back = {"code": code, **({"state": query["state"]} if "state" in query
                                         else {})}
                self.send_response(302)
                self.send_header("Location",
                                 f"{query['redirect_uri']}?{urllib.parse.urlencode(back)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            idp.requests.append(("POST", self.path, form))
            time.sleep(idp.token_delay)
            if self.path != "/token":
                return self._json(404, {"error": "not_found"})
            basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if (self.headers.get("Authorization") != f"Basic {basic}"
                    or form.get("client_secret") != CLIENT_SECRET):
                return self._json(401, {"error": "invalid_client"})
            found = idp.codes.pop(form.get("code", ""), None)  # one use only
            if (form.get("grant_type") != "authorization_code" or found is None
                    or found[1] != form.get("redirect_uri")):
                return self._json(400, {"error": "invalid_grant"})
            access = secrets.token_urlsafe(24)
            return self._json(200, {"access_token": access, "token_type": "Bearer",
                                    "expires_in": 300,
                                    "id_token": idp.id_token(found[0], access)})

    return Handler


@pytest.fixture(scope="module")
def idp():
    provider = FakeProvider(_free_port())
    server = ThreadingHTTPServer(("127.0.0.1", provider.port), _handler(provider))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Server:
    api: str
    ids: dict[str, str]
    log: Path


@pytest.fixture(scope="module")
def server(idp, tmp_path_factory):
    """`spotkit serve` (a process) over a catalog of two proposals, with the provider
    configured in serve.yaml as Tiled's OIDCAuthenticator."""
    from spotkit.catalog import open_catalog
    from spotkit.sim import simulate_tomo_scan

    work = tmp_path_factory.mktemp("oidc")
    ids = {}
    with open_catalog(work / "catalog.db") as cat:
        for name, proposal in (("a", "P-A"), ("b", "P-B"), ("n", None)):
            simulate_tomo_scan(work / f"{name}.h5", shape=(6, 2, 24), seed=len(ids),
                               sample=f"sample-{name}", proposal=proposal)
            ids[name] = cat.ingest(work / f"{name}.h5").id
    config = work / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "staff": ["sam"], "users": {"ann": ["P-A"], "bob": ["P-B"]},
        "authentication": {"providers": [{
            "provider": "facility",
            "authenticator": "tiled.authenticators:OIDCAuthenticator",
            "args": {"audience": AUDIENCE, "client_id": CLIENT_ID,
                     "client_secret": CLIENT_SECRET,
                     "well_known_uri": f"{idp.issuer}/.well-known/openid-configuration",
                     "timeout": PROVIDER_TIMEOUT},
        }]}}))
    port = _free_port()
    log = work / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spotkit.cli", "serve", "--catalog", str(work / "catalog.db"),
             "--config", str(config), "--auth-database", f"sqlite:///{work / 'auth.db'}",
             "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{api}/", timeout=2).status_code < 500:
                    break
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield Server(api, ids, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def login(server: Server, idp: FakeProvider, user: str, *, mode: str = "ok") -> httpx.Response:
    """The browser's way through: spotkit serve -> the provider -> back with a code."""
    idp.user, idp.mode = user, mode
    try:
        with httpx.Client(timeout=20) as browser:
            to_idp = browser.get(f"{server.api}/auth/provider/facility/authorize",
                                 params={"state": "xyz"})
            assert to_idp.status_code in (302, 307), to_idp.text
            back = browser.get(to_idp.headers["location"])
            assert back.status_code == 302, back.text
            return browser.get(back.headers["location"])
    finally:
        idp.user, idp.mode = None, "ok"


def bearer(tokens: httpx.Response) -> dict[str, str]:
    assert tokens.status_code == 200, tokens.text
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


def listed(server: Server, headers: dict) -> set[str]:
    r = httpx.get(f"{server.api}/search/", headers=headers, timeout=20)
    assert r.status_code == 200, r.text
    return {d["id"] for d in r.json()["data"]}


@pytest.mark.slow  # a server process and a provider
def test_login_flow_points_at_the_provider(server, idp):
    about = httpx.get(f"{server.api}/", timeout=20).json()
    providers = {p["provider"]: p for p in about["authentication"]["providers"]}
    assert set(providers) == {"spotkit", "facility"}
    assert providers["facility"]["mode"] == "external"
    authorize = f"{server.api}/auth/provider/facility/authorize"
    assert providers["facility"]["links"]["auth_endpoint"] == authorize
    r = httpx.get(authorize, params={"state": "s-1"}, timeout=20)
    assert r.status_code in (302, 307)
    where = urllib.parse.urlsplit(r.headers["location"])
    query = dict(urllib.parse.parse_qsl(where.query))
    assert f"{where.scheme}://{where.netloc}{where.path}" == f"{idp.issuer}/authorize"
    assert query["client_id"] == CLIENT_ID
    assert query["response_type"] == "code"
    assert query["state"] == "s-1"
    assert query["redirect_uri"] == f"{server.api}/auth/provider/facility/code"
    assert "openid" in query["scope"].split()
    seen = len(idp.requests)
    tokens = login(server, idp, "ann")
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["identity"] == {"id": "ann", "provider": "facility"}
    asked = idp.requests[seen:]
    posts = [r for r in asked if r[0] == "POST"]
    assert [p[1] for p in posts] == ["/token"]  # the code was exchanged at the provider
    assert posts[0][2]["redirect_uri"] == query["redirect_uri"]
    assert CLIENT_SECRET not in server.log.read_text()


@pytest.mark.slow  # a server process and a provider
def test_a_provider_login_sees_that_users_proposals(server, idp):
    ids = server.ids
    ann, bob, sam = (bearer(login(server, idp, u)) for u in ("ann", "bob", "sam"))
    assert listed(server, ann) == {ids["a"]}
    assert listed(server, bob) == {ids["b"]}
    assert listed(server, sam) == set(ids.values())
    who = httpx.get(f"{server.api}/auth/whoami", headers=ann, timeout=20).json()
    assert [(i["provider"], i["id"]) for i in who["identities"]] == [("facility", "ann")]
    r = httpx.get(f"{server.api}/metadata/{ids['a']}", headers=ann, timeout=20)
    assert (r.status_code, r.json()["data"]["attributes"]["metadata"]["proposal"]) == (
        200, "P-A")
    for other in ("b", "n"):  # another proposal's dataset, or none: no such entry
        r = httpx.get(f"{server.api}/metadata/{ids[other]}", headers=ann, timeout=20)
        assert r.status_code == 404, r.text
        r = httpx.get(f"{server.api}/array/full/{ids[other]}/data", headers=ann, timeout=20)
        assert r.status_code == 404, r.text
    r = httpx.get(f"{server.api}/array/full/{ids['a']}/data?slice=0", headers=ann,
                  timeout=20)
    assert r.status_code == 200, r.text
    eve = bearer(login(server, idp, "eve"))  # known to the provider, not in serve.yaml
    assert listed(server, eve) == set()
    r = httpx.post(f"{server.api}/auth/session/refresh", timeout=20,  # a session goes on
                   json={"refresh_token": login(server, idp, "ann").json()["refresh_token"]})
    assert r.status_code == 200, r.text
    assert listed(server, {"Authorization": f"Bearer {r.json()['access_token']}"}) == {
        ids["a"]}


@pytest.mark.slow  # a server process and a provider
@pytest.mark.parametrize(("mode", "why"), [
    ("expired", "ExpiredSignatureError"),
    ("wrong-key", "InvalidSignatureError"),
    ("wrong-audience", "InvalidAudienceError"),
    ("wrong-issuer", "InvalidIssuerError"),
])
def test_bad_provider_tokens_are_refused(server, idp, mode, why):
    logged = len(server.log.read_text())
    tokens = login(server, idp, "sam", mode=mode)
    assert tokens.status_code == 401, tokens.text
    assert "access_token" not in tokens.text
    assert why in server.log.read_text()[logged:]  # refused for that very reason


@pytest.mark.slow  # a server process and a provider
def test_tokens_that_did_not_come_through_the_login_are_refused(server, idp):
    forged = idp.id_token("sam", "x")  # the provider's own, valid id token
    for headers in ({}, {"Authorization": f"Bearer {forged}"},
                    {"Authorization": "Bearer not-a-token"}):
        r = httpx.get(f"{server.api}/search/", headers=headers, timeout=20)
        assert r.status_code == 401, (headers, r.text)
    r = httpx.get(f"{server.api}/auth/provider/facility/code", params={"code": "made-up"},
                  timeout=20)  # a code the provider never issued
    assert r.status_code == 401, r.text
    r = httpx.get(f"{server.api}/auth/provider/facility/code", timeout=20)  # no code
    assert r.status_code == 401, r.text


@pytest.mark.slow  # a server process and a provider
def test_a_slow_provider_does_not_hold_the_server(server, idp):
    """A login waiting on a slow token endpoint holds neither the server nor other users'
    requests; a provider that does not answer within its timeout fails the login (504),
    not the server."""
    ann = bearer(login(server, idp, "ann"))
    done: dict[str, httpx.Response] = {}
    idp.token_delay = PROVIDER_TIMEOUT * 0.6
    try:
        waiting = threading.Thread(target=lambda: done.update(bob=login(server, idp, "bob")))
        waiting.start()
        time.sleep(0.5)  # bob's login now waits at the provider's token endpoint
        started = time.monotonic()
        seen = listed(server, ann)
        took = time.monotonic() - started
        still_waiting = waiting.is_alive()
        waiting.join(timeout=30)
        print(f"\na request while a login waits {idp.token_delay:g} s at the provider: "
              f"{took:.3f} s")
        assert still_waiting
        assert seen == {server.ids["a"]}
        assert took < idp.token_delay / 2, took
        assert done["bob"].status_code == 200, done["bob"].text
        assert done["bob"].json()["identity"]["id"] == "bob"
        idp.token_delay = PROVIDER_TIMEOUT + 1.5
        started = time.monotonic()
        r = login(server, idp, "bob")
        took = time.monotonic() - started
        assert r.status_code == 504, r.text
        assert f"did not answer within {PROVIDER_TIMEOUT:g} s" in r.text
        assert took < PROVIDER_TIMEOUT + 1.5, took
    finally:
        idp.token_delay = 0.0
    assert listed(server, bearer(login(server, idp, "bob"))) == {server.ids["b"]}


def test_the_provider_is_never_asked_in_the_event_loop(idp):
    """The discovery document is fetched in the background; until the provider answered,
    the login's first step says 'try again' (503) instead of waiting in the event loop."""
    from fastapi import HTTPException

    from spotkit.serve._oidc import OIDCAuthenticator

    args = {"audience": AUDIENCE, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    down = OIDCAuthenticator(
        **args, well_known_uri=f"http://127.0.0.1:{_free_port()}/.well-known/x", timeout=1)
    with pytest.raises(HTTPException) as info:
        down.authorization_endpoint  # noqa: B018
    assert info.value.status_code == 503
    up = OIDCAuthenticator(
        **args, well_known_uri=f"{idp.issuer}/.well-known/openid-configuration", timeout=5)
    deadline = time.monotonic() + 10
    while not up._discovered():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert str(up.authorization_endpoint) == f"{idp.issuer}/authorize"
    assert up.keys() == idp.jwks()["keys"]
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        OIDCAuthenticator(**args, well_known_uri=f"{idp.issuer}/x", timeout=0)
