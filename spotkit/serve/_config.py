"""The serve configuration (YAML): who is staff, which proposals each user belongs to, and
how users authenticate.

Example ``serve.yaml``::

    staff: [alice]                 # see and read every dataset
    users:                         # user -> the proposals whose datasets they see
      bob: [ALS-11234, ALS-11290]
      carol: [ALS-12001]
    authentication:
      # Tiled's authentication database: principals and API keys (stored hashed)
      database: sqlite:////var/lib/spotkit/serve-auth.db
      # signing keys for sessions and tokens; a file readable by the owner only (0600)
      secret_keys_file: /etc/spotkit/serve-secret
      # optional: Tiled authenticators (OIDC, PAM, LDAP) for interactive logins; without
      # them, API keys issued with `spotkit serve keys create USER` are the only way in
      providers:
        - provider: facility
          authenticator: tiled.authenticators:OIDCAuthenticator
          args: {audience: spotkit, client_id: spotkit, client_secret: ...,
                 well_known_uri: https://login.example.org/.well-known/openid-configuration}

    mounts:                        # other catalogs, read-only, beside the local datasets
      nsls2:                       # /api/v1/metadata/nsls2/<id> on this server
        uri: https://tiled.nsls2.example.org/api
        api_key_env: NSLS2_KEY     # the key is read from this environment variable
        field_map: {sample: start.sample_name, start_time: start.time}
        public: false              # default: staff only
        timeout: 10                # seconds per request to that server
      archive:
        intake: /data/archive/catalog.yaml   # relative paths: beside this file
        public: true               # every user with a key may search and read it

Mounted sources are not split by proposal (their proposals are another facility's): a
mount is visible to staff only, unless it is marked ``public: true``, then to every
authenticated user. Nothing is written to a mount.

User names are the identity ids the provider gives (the OIDC ``sub`` or username claim, the
PAM login); keys issued by ``spotkit serve keys`` belong to the provider ``spotkit``.
Tiled's ``OIDCAuthenticator`` runs as :class:`spotkit.serve._oidc.OIDCAuthenticator` (the
same, with its calls to the provider off the server's event loop; ``args`` may add
``timeout``, seconds per call). ``ProxiedOIDCAuthenticator`` is refused: Tiled 0.2.20 takes
it only as the server's single provider, and the server always has its key provider.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spotkit.errors import SpotkitError

__all__ = ["KEYS_PROVIDER", "MountSpec", "ServeConfig", "ServeConfigError", "load_config"]

#: the identity provider of users whose API keys ``spotkit serve keys create`` issues
KEYS_PROVIDER = "spotkit"

_TOP = {"staff", "users", "authentication", "mounts"}
_MOUNT = {"uri", "intake", "api_key_env", "field_map", "public", "timeout"}
_MOUNT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_AUTH = {"database", "secret_keys_file", "providers", "access_token_max_age",
         "refresh_token_max_age"}


class ServeConfigError(SpotkitError, ValueError):
    """The serve configuration is not valid; the message names the file and the field."""

    def __init__(self, path: str | os.PathLike | None, field: str, problem: str):
        self.path = None if path is None else Path(path)
        self.field = field
        where = f"{self.path}: " if self.path is not None else "serve configuration: "
        super().__init__(f"{where}{field}: {problem}")


@dataclass(frozen=True)
class MountSpec:
    """One read-only mount of ``serve.yaml`` (see the module docstring).

    Attributes
    ----------
    name : str
    uri : str or None
        A Tiled server (``spotkit serve`` or any other).
    intake : pathlib.Path or None
        An intake catalog YAML.
    api_key_env : str or None
        The environment variable holding the key for ``uri``.
    field_map : dict
        spotkit field -> metadata key at the source.
    public : bool
        Every authenticated user may search and read it (default: staff only).
    timeout : float
        Seconds per request to ``uri``.
    """

    name: str
    uri: str | None = None
    intake: Path | None = None
    api_key_env: str | None = None
    field_map: Mapping[str, str] = field(default_factory=dict)
    public: bool = False
    timeout: float = 10.0
    path: Path | None = None

    def api_key(self) -> str | None:
        """The key from :attr:`api_key_env` (None when no variable is named).

        Raises
        ------
        ServeConfigError
            When the variable is named but not set.
        """
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ServeConfigError(self.path, f"mounts.{self.name}.api_key_env",
                                   f"the environment variable {self.api_key_env} is not "
                                   "set; export it before starting the server")
        return key


@dataclass(frozen=True)
class ServeConfig:
    """Who may see what, and how users authenticate (see the module docstring).

    Attributes
    ----------
    staff : frozenset of str
        Users who see every dataset.
    users : mapping of str to frozenset of str
        Each user's proposals.
    database : str or None
        SQLAlchemy URL of Tiled's authentication database (None: a file beside the catalog
        is chosen by :func:`spotkit.serve.build_app`).
    secret_keys_file : pathlib.Path or None
        File with one signing key per line (0600).
    providers : tuple of dict
        Tiled authentication providers (``provider``, ``authenticator``, ``args``).
    path : pathlib.Path or None
        The file it was read from.
    """

    staff: frozenset[str] = frozenset()
    users: Mapping[str, frozenset[str]] = field(default_factory=dict)
    database: str | None = None
    secret_keys_file: Path | None = None
    providers: tuple[dict, ...] = ()
    access_token_max_age: int | None = None
    refresh_token_max_age: int | None = None
    path: Path | None = None
    mounts: tuple[MountSpec, ...] = ()

    def proposals_of(self, user: str) -> frozenset[str] | None:
        """The proposals ``user`` may see; ``None`` for staff (everything)."""
        if user in self.staff:
            return None
        return self.users.get(user, frozenset())

    def secret_keys(self) -> list[str]:
        """The signing keys from :attr:`secret_keys_file` (empty list if none is set)."""
        if self.secret_keys_file is None:
            return []
        where = self.secret_keys_file
        try:
            mode = where.stat().st_mode
            text = where.read_text()
        except OSError as exc:
            raise ServeConfigError(self.path, "authentication.secret_keys_file",
                                   f"cannot read {where} ({exc.strerror})") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ServeConfigError(
                self.path, "authentication.secret_keys_file",
                f"{where} is readable by other users (mode {stat.S_IMODE(mode):o}); "
                f"run `chmod 600 {where}`")
        keys = [line.strip() for line in text.splitlines() if line.strip()]
        if not keys or any(len(k) < 32 for k in keys):
            raise ServeConfigError(
                self.path, "authentication.secret_keys_file",
                f"{where} must hold one key of at least 32 characters per line; make one "
                "with `openssl rand -hex 32`")
        return keys


def _names(value: Any, path, field: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str) or not isinstance(value, list):
        raise ServeConfigError(path, field, f"must be a list of names, not {value!r}")
    bad = [v for v in value if not isinstance(v, str | int) or isinstance(v, bool)
           or not str(v).strip()]
    if bad:
        raise ServeConfigError(path, field, f"entries must be non-empty names; got {bad[:3]!r}")
    return frozenset(str(v).strip() for v in value)


def _seconds(value: Any, path, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ServeConfigError(path, field, f"must be a positive number of seconds, not {value!r}")
    return value


_MAPPABLE = ("beamline", "sample", "proposal", "kind", "status", "title", "start_time")


def _mount(name: Any, spec: Any, path: Path | None) -> MountSpec:
    fld = f"mounts.{name}"
    if not isinstance(name, str) or not _MOUNT_NAME.fullmatch(name) or name.startswith("ds-"):
        raise ServeConfigError(path, fld, "mount names are 1-32 lowercase letters, digits, "
                               "'-' or '_', starting with a letter (not 'ds-', which dataset "
                               "ids use)")
    if not isinstance(spec, Mapping):
        raise ServeConfigError(path, fld, "must be a mapping with `uri` (a Tiled server) or "
                               "`intake` (a catalog YAML)")
    unknown = sorted(set(map(str, spec)) - _MOUNT)
    if unknown:
        raise ServeConfigError(path, f"{fld}.{unknown[0]}",
                               f"unknown field; the fields are {sorted(_MOUNT)}")
    uri, intake = spec.get("uri"), spec.get("intake")
    if (uri is None) == (intake is None):
        raise ServeConfigError(path, fld, "give exactly one of `uri` (a Tiled server) and "
                               "`intake` (a catalog YAML)")
    if uri is not None and (not isinstance(uri, str)
                            or not uri.startswith(("http://", "https://"))):
        raise ServeConfigError(path, f"{fld}.uri", f"must be an http(s):// URL, not {uri!r}")
    intake_path = None
    if intake is not None:
        if not isinstance(intake, str) or not intake.endswith((".yaml", ".yml")):
            raise ServeConfigError(path, f"{fld}.intake",
                                   f"must be the path of an intake catalog .yaml, not {intake!r}")
        intake_path = Path(intake).expanduser()
        if not intake_path.is_absolute() and path is not None:
            intake_path = path.parent / intake_path
    env = spec.get("api_key_env")
    if env is not None:
        if intake is not None:
            raise ServeConfigError(path, f"{fld}.api_key_env", "only a `uri` mount takes a key")
        if not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
            raise ServeConfigError(path, f"{fld}.api_key_env", "must name an environment "
                                   f"variable (NSLS2_KEY), not {env!r}; never put the key "
                                   "itself in this file")
    field_map = spec.get("field_map") or {}
    if not isinstance(field_map, Mapping):
        raise ServeConfigError(path, f"{fld}.field_map", "must map spotkit fields to the "
                               "source's metadata keys, e.g. {sample: start.sample_name}")
    for key, value in field_map.items():
        if key not in _MAPPABLE:
            raise ServeConfigError(path, f"{fld}.field_map.{key}",
                                   f"unknown field; it maps {', '.join(_MAPPABLE)}")
        if not isinstance(value, str) or not value.strip():
            raise ServeConfigError(path, f"{fld}.field_map.{key}",
                                   "must be a metadata key (dotted for nested keys)")
    public = spec.get("public", False)
    if not isinstance(public, bool):
        raise ServeConfigError(path, f"{fld}.public", f"must be true or false, not {public!r}")
    timeout = spec.get("timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ServeConfigError(path, f"{fld}.timeout",
                               f"must be a positive number of seconds, not {timeout!r}")
    return MountSpec(name=name, uri=uri, intake=intake_path, api_key_env=env,
                     field_map={str(k): str(v).strip() for k, v in field_map.items()},
                     public=public, timeout=float(timeout), path=path)


def parse_config(data: Any, path: str | os.PathLike | None = None) -> ServeConfig:
    """Validate a configuration already read from YAML (a dict) into a :class:`ServeConfig`.

    Raises
    ------
    ServeConfigError
        Naming the file and the field, for every kind of mistake.

    Examples
    --------
    >>> cfg = parse_config({"staff": ["alice"], "users": {"bob": ["P-1", "P-2"]}})
    >>> sorted(cfg.proposals_of("bob")), cfg.proposals_of("alice"), cfg.proposals_of("eve")
    (['P-1', 'P-2'], None, frozenset())
    >>> parse_config({"users": {"bob": "P-1"}}, "serve.yaml")
    Traceback (most recent call last):
    spotkit.serve._config.ServeConfigError: serve.yaml: users.bob: must be a list ...
    """
    where = None if path is None else Path(path)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ServeConfigError(where, "(top level)",
                               "must be a mapping with staff, users, authentication and "
                               "mounts")
    unknown = sorted(set(map(str, data)) - _TOP)
    if unknown:
        raise ServeConfigError(where, unknown[0],
                               f"unknown field; the fields are {sorted(_TOP)}")
    staff = _names(data.get("staff"), where, "staff")
    users_in = data.get("users") or {}
    if not isinstance(users_in, Mapping):
        raise ServeConfigError(where, "users",
                               "must map each user name to a list of proposals")
    users: dict[str, frozenset[str]] = {}
    for name, proposals in users_in.items():
        if not isinstance(name, str | int) or isinstance(name, bool) or not str(name).strip():
            raise ServeConfigError(where, f"users.{name!r}", "user names must be non-empty")
        users[str(name).strip()] = _names(proposals, where, f"users.{name}")
    auth = data.get("authentication") or {}
    if not isinstance(auth, Mapping):
        raise ServeConfigError(where, "authentication", "must be a mapping")
    unknown = sorted(set(map(str, auth)) - _AUTH)
    if unknown:
        raise ServeConfigError(where, f"authentication.{unknown[0]}",
                               f"unknown field; the fields are {sorted(_AUTH)}")
    database = auth.get("database")
    if database is not None and (not isinstance(database, str) or "://" not in database):
        raise ServeConfigError(where, "authentication.database",
                               "must be a SQLAlchemy URL such as sqlite:////path/auth.db or "
                               f"postgresql://host/db, not {database!r}")
    secret = auth.get("secret_keys_file")
    if secret is not None and not isinstance(secret, str):
        raise ServeConfigError(where, "authentication.secret_keys_file", "must be a path")
    secret_path = None
    if secret is not None:
        secret_path = Path(secret).expanduser()
        if not secret_path.is_absolute() and where is not None:
            secret_path = where.parent / secret_path
    providers = auth.get("providers") or []
    if not isinstance(providers, list):
        raise ServeConfigError(where, "authentication.providers",
                               "must be a list of {provider, authenticator, args}")
    seen = {KEYS_PROVIDER}
    for i, spec in enumerate(providers):
        fld = f"authentication.providers[{i}]"
        if not isinstance(spec, Mapping) or not {"provider", "authenticator"} <= set(spec):
            raise ServeConfigError(where, fld, "needs `provider` (a name) and `authenticator` "
                                   "(e.g. tiled.authenticators:OIDCAuthenticator)")
        extra = sorted(set(spec) - {"provider", "authenticator", "args"})
        if extra:
            raise ServeConfigError(where, f"{fld}.{extra[0]}", "unknown field")
        if spec["provider"] in seen:
            raise ServeConfigError(where, f"{fld}.provider",
                                   f"{spec['provider']!r} is used twice (or is the reserved "
                                   f"name {KEYS_PROVIDER!r})")
        seen.add(spec["provider"])
        if spec.get("args") is not None and not isinstance(spec["args"], Mapping):
            raise ServeConfigError(where, f"{fld}.args", "must be a mapping")
        if str(spec["authenticator"]).rsplit(":", 1)[-1] == "ProxiedOIDCAuthenticator":
            raise ServeConfigError(
                where, f"{fld}.authenticator",
                "Tiled 0.2.20 takes ProxiedOIDCAuthenticator only as the server's single "
                "provider, and spotkit serve always has its API-key provider; use "
                "tiled.authenticators:OIDCAuthenticator (browser login, then Tiled's own "
                "session tokens)")
    mounts_in = data.get("mounts") or {}
    if not isinstance(mounts_in, Mapping):
        raise ServeConfigError(where, "mounts", "must map each mount's name to its `uri` or "
                               "`intake`")
    mounts = tuple(_mount(name, spec, where) for name, spec in mounts_in.items())
    return ServeConfig(
        staff=staff,
        mounts=mounts,
        users=users,
        database=database,
        secret_keys_file=secret_path,
        providers=tuple(dict(p) for p in providers),
        access_token_max_age=_seconds(auth.get("access_token_max_age"), where,
                                      "authentication.access_token_max_age"),
        refresh_token_max_age=_seconds(auth.get("refresh_token_max_age"), where,
                                       "authentication.refresh_token_max_age"),
        path=where,
    )


def load_config(path: str | os.PathLike) -> ServeConfig:
    """Read and validate a serve configuration file (YAML).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    ServeConfig

    Raises
    ------
    ServeConfigError
        If the file is missing, not YAML, or a field is wrong (the message names it).
    """
    where = Path(path).expanduser()
    try:
        text = where.read_text()
    except OSError as exc:
        raise ServeConfigError(where, "(file)", f"cannot be read ({exc.strerror}); check the "
                               "path given to --config") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ServeConfigError(where, "(file)", f"is not valid YAML ({exc})") from exc
    return parse_config(data, where.absolute())
