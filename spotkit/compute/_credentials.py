"""NERSC Superfacility API client keys: find them, check them, never show them.

A key is made at https://iris.nersc.gov (Profile → Superfacility API Clients) and saved by
the user as a file, following the ``sfapi-client`` convention:

- a PEM file (``~/.superfacility/key.pem``) whose first line is the client id, followed by
  the private key (``-----BEGIN RSA PRIVATE KEY----- ...``), or
- a JSON file (``~/.superfacility/key.json``) ``{"client_id": "...", "secret": JWK}`` where
  the secret is the private key as a JSON Web Key (an object, or a string holding one).

The file must be readable by its owner only (``chmod 600``). The secret stays inside a
:class:`ClientKey`, whose ``repr`` and ``str`` show the client id and the file, never the key,
and which refuses to be pickled (so it cannot end up in a job file or a notebook by accident).
"""

from __future__ import annotations

import json
import logging
import re
import stat
from pathlib import Path

from ..errors import CredentialsError

__all__ = ["KEY_DIR", "ClientKey", "CredentialsError", "load_key", "token_error"]

log = logging.getLogger(__name__)

KEY_DIR = Path("~/.superfacility")
"""Where sfapi-client, and spotkit, look for keys when no path is given."""

IRIS_HINT = (
    "Create a new key at https://iris.nersc.gov (Profile → Superfacility API Clients), "
    "save it as ~/.superfacility/key.pem (client id on the first line, then the private "
    "key) and run `chmod 600 ~/.superfacility/key.pem`."
)

_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.-]{4,128}$")
_PEM = re.compile(
    r"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----.+?-----END (?:RSA |EC )?PRIVATE KEY-----",
    re.DOTALL,
)


class ClientKey:
    """A client id and its private key, read from a checked file.

    The private key is only handed to ``sfapi_client.Client``; it is not in ``repr``,
    ``str``, :meth:`describe` or a pickle.

    Parameters
    ----------
    client_id : str
        The Superfacility API client id.
    secret : str or dict
        The private key: a PEM string or a JWK dictionary.
    path : path-like, optional
        The file it came from (recorded, it is not secret).
    """

    __slots__ = ("_secret", "client_id", "path")

    def __init__(self, client_id: str, secret: str | dict, *, path: Path | None = None):
        self.client_id = client_id
        self.path = Path(path) if path is not None else None
        self._secret = secret

    @property
    def secret(self) -> str | dict:
        """The private key, for ``sfapi_client.Client`` only."""
        return self._secret

    def describe(self) -> dict:
        """What may be recorded about the key: its file, never its content."""
        return {"key": str(self.path) if self.path else None}

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"ClientKey(client_id={self.client_id!r}{where}, secret=<hidden>)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError(
            "a NERSC ClientKey is not picklable, so that the private key is never written "
            "to disk by accident; pass the key file's path instead"
        )


def load_key(key: str | Path | None = None, *, client_id: str | None = None) -> ClientKey:
    """Find, check and read a NERSC Superfacility API key.

    Parameters
    ----------
    key : path-like or str, optional
        A key file, or the name of one in ``~/.superfacility`` (``"key"`` finds
        ``key.pem``, ``key.json``, ``key``). ``None``: the one key file in
        ``~/.superfacility``.
    client_id : str, optional
        The client id, for a PEM file that holds only the private key. When the file names
        a client id too, the two must agree.

    Returns
    -------
    ClientKey

    Raises
    ------
    CredentialsError
        No key file, several candidates, a mode other than owner-only (the message says
        ``chmod 600 PATH``), or a file that is not a key.

    Examples
    --------
    A key file as iris.nersc.gov gives it (here a freshly made RSA key, as JSON) in a
    temporary folder; the private key is never shown:

    >>> import json, pathlib, tempfile
    >>> from joserfc.jwk import RSAKey
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "key.json"
    >>> jwk = RSAKey.generate_key(2048).as_dict(private=True)
    >>> _ = path.write_text(json.dumps({"client_id": "abcdefghijklm", "secret": jwk}))
    >>> load_key(path)                                  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    spotkit.errors.CredentialsError: ...can be read by others...chmod 600...
    >>> path.chmod(0o600)
    >>> key = load_key(path)
    >>> key.client_id, jwk["d"] in repr(key), key.describe() == {"key": str(path)}
    ('abcdefghijklm', False, True)
    """
    path = _find(key)
    _check_mode(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(
            f"cannot read the NERSC key file {path}: {exc.__class__.__name__}. {IRIS_HINT}",
            reason="format", path=path,
        ) from None
    if path.suffix == ".json" or text.lstrip().startswith("{"):
        found_id, secret = _parse_json(text, path)
    else:
        found_id, secret = _parse_pem(text, path)
    if found_id and client_id and found_id != client_id:
        raise CredentialsError(
            f"the NERSC key file {path} is for client id {found_id!r}, but client_id="
            f"{client_id!r} was given; drop client_id or use that client's key file.",
            reason="format", path=path,
        )
    cid = found_id or client_id
    if not cid:
        raise CredentialsError(
            f"the NERSC key file {path} holds no client id: put the client id on the first "
            "line of the PEM file (as iris.nersc.gov shows it), or pass client_id=...",
            reason="format", path=path,
        )
    if not _CLIENT_ID.match(cid):
        raise CredentialsError(
            f"the NERSC key file {path} does not start with a client id (the first line "
            "must be the client id alone, as iris.nersc.gov shows it).",
            reason="format", path=path,
        )
    _check_private_key(secret, path)
    log.debug("using NERSC key %s (client id %s)", path, cid)
    return ClientKey(cid, secret, path=path)


def token_error(error: str | None, description: str | None, *, key: ClientKey | None = None):
    """Turn the token endpoint's refusal into a :class:`CredentialsError` that says what to do.

    Parameters
    ----------
    error, description : str or None
        The OAuth ``error`` and ``error_description`` fields of the token response.
    key : ClientKey, optional
        The key that was refused (only its file and client id are named).

    Returns
    -------
    CredentialsError
    """
    error = (error or "").strip()
    text = f"{error} {description or ''}".lower()
    which = f"NERSC key {key.path} (client id {key.client_id})" if key and key.path else (
        f"NERSC client id {key.client_id}" if key else "the NERSC key"
    )
    said = f" (token endpoint said: {error}: {description})" if description else (
        f" (token endpoint said: {error})" if error else ""
    )
    path = key.path if key else None
    if "expire" in text:
        return CredentialsError(
            f"{which} has expired{said}. NERSC keys are valid for a limited time. "
            + IRIS_HINT, reason="expired", path=path,
        )
    if error in {"invalid_scope", "unauthorized_client", "access_denied"} or any(
        word in text for word in ("policy", "scope", "not allowed", "forbidden", "ip address")
    ):
        return CredentialsError(
            f"{which} is not allowed to do this{said}: the key lacks the needed policy "
            "(security level, or the IP range it was created for). Create a key with the "
            "needed access (e.g. 'red' for job submission) from this machine's address at "
            "https://iris.nersc.gov, save it under ~/.superfacility and `chmod 600` it.",
            reason="policy", path=path,
        )
    return CredentialsError(
        f"{which} was rejected{said}: it may have been revoked, or the client id and "
        f"private key do not belong together. {IRIS_HINT}",
        reason="rejected", path=path,
    )


# -- helpers ----------------------------------------------------------------------------


def _find(key: str | Path | None) -> Path:
    home = KEY_DIR.expanduser()
    if key is not None:
        given = Path(key).expanduser()
        if given.is_file():
            return given.resolve()
        if given.is_dir():
            raise CredentialsError(
                f"{given} is a folder, not a NERSC key file; pass the key file itself.",
                reason="missing", path=given,
            )
        name = str(key)
        if "/" not in name:
            candidates = [home / name, home / f"{name}.pem", home / f"{name}.json"]
            found = [p for p in candidates if p.is_file()]
            if found:
                return found[0].resolve()
        raise CredentialsError(
            f"no NERSC key file at {given}"
            + (f" nor {home}/{name}[.pem|.json]" if "/" not in name else "")
            + f". {IRIS_HINT}",
            reason="missing", path=given,
        )
    files = sorted(
        p for p in (home.iterdir() if home.is_dir() else ())
        if p.is_file() and not p.name.startswith(".")
    )
    if not files:
        raise CredentialsError(
            f"no NERSC key: {home} has no key file and key= was not given. {IRIS_HINT}",
            reason="missing", path=home,
        )
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        raise CredentialsError(
            f"{home} holds several files ({names}); say which key to use: "
            "NERSC(key='NAME') or key='/path/to/key.pem'.",
            reason="ambiguous", path=home,
        )
    return files[0].resolve()


def _check_mode(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise CredentialsError(
            f"the NERSC key file {path} can be read by others (mode {mode:o}); a private key "
            f"must be readable by its owner only. Run `chmod 600 {path}` and try again "
            "(and consider creating a new key if others could have read it).",
            reason="permissions", path=path,
        )


def _parse_pem(text: str, path: Path) -> tuple[str | None, str]:
    match = _PEM.search(text)
    if match is None:
        raise CredentialsError(
            f"the NERSC key file {path} holds no PEM private key "
            "('-----BEGIN RSA PRIVATE KEY-----' ... '-----END RSA PRIVATE KEY-----'). "
            + IRIS_HINT,
            reason="format", path=path,
        )
    head = text[: match.start()].strip().splitlines()
    client_id = head[0].strip() if head else None
    return client_id, match.group(0) + "\n"


def _parse_json(text: str, path: Path) -> tuple[str | None, str | dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise CredentialsError(
            f"the NERSC key file {path} is not valid JSON; expected "
            '{"client_id": "...", "secret": {...JWK...}}.',
            reason="format", path=path,
        ) from None
    if not isinstance(data, dict) or "secret" not in data:
        raise CredentialsError(
            f"the NERSC key file {path} has no 'secret' field; expected "
            '{"client_id": "...", "secret": {...JWK...}}.',
            reason="format", path=path,
        )
    secret = data["secret"]
    if isinstance(secret, str) and secret.lstrip().startswith("{"):
        try:
            secret = json.loads(secret)
        except json.JSONDecodeError:
            raise CredentialsError(
                f"the 'secret' in NERSC key file {path} is not a valid JSON Web Key.",
                reason="format", path=path,
            ) from None
    cid = data.get("client_id")
    return (str(cid).strip() if cid else None), secret


def _check_private_key(secret: str | dict, path: Path) -> None:
    """Load the private key once so that a damaged file fails here, not at NERSC."""
    from joserfc.jwk import ECKey, RSAKey

    for kind in (RSAKey, ECKey):
        try:
            key = kind.import_key(secret)
        except Exception:  # noqa: S112 - any parse failure means "try the next kind"
            continue
        if key.is_private:
            return
        raise CredentialsError(
            f"the NERSC key file {path} holds a public key; it needs the private key that "
            "iris.nersc.gov showed when the client was created.",
            reason="format", path=path,
        )
    raise CredentialsError(
        f"the private key in NERSC key file {path} cannot be read (damaged or not RSA/EC). "
        + IRIS_HINT,
        reason="format", path=path,
    )
