"""NERSC client keys: where they are found, which files are refused, and why (no server)."""

from __future__ import annotations

import json
import pickle

import pytest

from spotkit.compute._credentials import ClientKey, load_key, token_error
from spotkit.errors import CredentialsError

CLIENT_ID = "abcdefghijklm"  # 13 characters, like NERSC's


@pytest.fixture(scope="module")
def rsa_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


@pytest.fixture
def pem_text(rsa_key) -> str:
    return rsa_key.as_pem(private=True).decode()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh $HOME, so that ``~/.superfacility`` is the test's."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def write_key(path, text, mode=0o600):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def secret_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def test_pem_file_with_client_id(tmp_path, pem_text):
    path = write_key(tmp_path / "key.pem", f"{CLIENT_ID}\n{pem_text}")
    key = load_key(path)
    assert key.client_id == CLIENT_ID
    assert key.path == path.resolve()
    assert "BEGIN" in key.secret
    for shown in (repr(key), str(key), json.dumps(key.describe())):
        assert CLIENT_ID in shown or "key" in shown
        assert not any(line in shown for line in secret_lines(pem_text))
    assert "<hidden>" in repr(key)


def test_json_file_with_jwk_object_or_string(tmp_path, rsa_key):
    jwk = rsa_key.as_dict(private=True)
    for i, secret in enumerate((jwk, json.dumps(jwk))):
        path = write_key(tmp_path / f"key{i}.json",
                         json.dumps({"client_id": CLIENT_ID, "secret": secret}))
        key = load_key(path)
        assert key.client_id == CLIENT_ID
        assert isinstance(key.secret, dict)
        assert jwk["d"] not in repr(key)


def test_sfapi_client_reads_the_same_file(tmp_path, pem_text):
    """Our reading of the file agrees with sfapi-client's own (``Client(key=PATH)``)."""
    from spotkit.compute._nersc import _sfapi

    Client = _sfapi().Client
    path = write_key(tmp_path / "key.pem", f"{CLIENT_ID}\n{pem_text}")
    client = Client(key=path)
    assert client._client_id == load_key(path).client_id


def test_default_location_and_names(home, pem_text):
    path = write_key(home / ".superfacility" / "mykey.pem", f"{CLIENT_ID}\n{pem_text}")
    assert load_key().path == path.resolve()
    assert load_key("mykey").path == path.resolve()
    assert load_key("mykey.pem").path == path.resolve()
    assert load_key("~/.superfacility/mykey.pem").path == path.resolve()


def test_no_key_says_where_to_get_one(home):
    with pytest.raises(CredentialsError, match=r"iris\.nersc\.gov") as info:
        load_key()
    assert info.value.reason == "missing"
    with pytest.raises(CredentialsError, match="no NERSC key file") as info:
        load_key("nokey")
    assert info.value.reason == "missing"


def test_several_keys_must_be_named(home, pem_text):
    for name in ("a.pem", "b.pem"):
        write_key(home / ".superfacility" / name, f"{CLIENT_ID}\n{pem_text}")
    with pytest.raises(CredentialsError, match=r"a\.pem, b\.pem.*key='NAME'") as info:
        load_key()
    assert info.value.reason == "ambiguous"
    assert load_key("b").path.name == "b.pem"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_key_readable_by_others_is_refused(tmp_path, pem_text, mode):
    path = write_key(tmp_path / "key.pem", f"{CLIENT_ID}\n{pem_text}", mode=mode)
    with pytest.raises(CredentialsError) as info:
        load_key(path)
    assert info.value.reason == "permissions"
    assert f"chmod 600 {path.resolve()}" in str(info.value)
    assert not any(line in str(info.value) for line in secret_lines(pem_text))


def test_owner_read_only_is_fine(tmp_path, pem_text):
    path = write_key(tmp_path / "key.pem", f"{CLIENT_ID}\n{pem_text}", mode=0o400)
    assert load_key(path).client_id == CLIENT_ID


def test_pem_without_client_id_needs_one(tmp_path, pem_text):
    path = write_key(tmp_path / "key.pem", pem_text)
    with pytest.raises(CredentialsError, match="client_id") as info:
        load_key(path)
    assert info.value.reason == "format"
    assert load_key(path, client_id=CLIENT_ID).client_id == CLIENT_ID
    with_id = write_key(tmp_path / "id.pem", f"{CLIENT_ID}\n{pem_text}")
    with pytest.raises(CredentialsError, match="client id"):
        load_key(with_id, client_id="someoneelse12")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (f"{CLIENT_ID}\nnot a key at all\n", "no PEM private key"),
        ('{"client_id": "x"', "not valid JSON"),
        ('{"client_id": "abcdefghijklm"}', "no 'secret'"),
        (f"{CLIENT_ID}\n-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
         "cannot be read"),
        ("two words\n-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
         "client id"),
    ],
)
def test_files_that_are_not_keys(tmp_path, text, match):
    suffix = ".json" if text.startswith("{") else ".pem"
    path = write_key(tmp_path / f"key{suffix}", text)
    with pytest.raises(CredentialsError, match=match) as info:
        load_key(path)
    assert info.value.reason == "format"


def test_public_key_is_not_enough(tmp_path, rsa_key):
    public = rsa_key.as_dict(private=False)
    path = write_key(tmp_path / "key.json", json.dumps({"client_id": CLIENT_ID, "secret": public}))
    with pytest.raises(CredentialsError, match="public key"):
        load_key(path)


def test_key_is_not_picklable(tmp_path, pem_text):
    key = load_key(write_key(tmp_path / "key.pem", f"{CLIENT_ID}\n{pem_text}"))
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(key)


@pytest.mark.parametrize(
    ("error", "description", "reason", "says"),
    [
        ("invalid_client", "Client authentication failed: client expired", "expired",
         "has expired"),
        ("invalid_client", "Client credentials expired at 2026-01-01", "expired", "iris"),
        ("unauthorized_client", "Client not authorized for this policy", "policy",
         "lacks the needed policy"),
        ("access_denied", "request from IP address 1.2.3.4 not allowed", "policy", "IP range"),
        ("invalid_scope", None, "policy", "policy"),
        ("invalid_client", "Client authentication failed", "rejected", "revoked"),
    ],
)
def test_token_endpoint_refusals_say_what_to_do(tmp_path, error, description, reason, says):
    key = ClientKey(CLIENT_ID, "secret-not-shown", path=tmp_path / "key.pem")
    exc = token_error(error, description, key=key)
    assert isinstance(exc, CredentialsError)
    assert exc.reason == reason
    assert says in str(exc)
    assert str(tmp_path / "key.pem") in str(exc)
    assert "secret-not-shown" not in str(exc)
