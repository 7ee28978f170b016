"""The Tiled application over the spotkit catalog, and the server that runs it."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from tiled.server.protocols import InternalAuthenticator

from spotkit.serve._adapters import CatalogAdapter
from spotkit.serve._config import KEYS_PROVIDER, ServeConfig, load_config
from spotkit.serve._oidc import TILED_OIDC
from spotkit.serve._policy import ProposalAccessPolicy

__all__ = ["KeysOnlyAuthenticator", "RedactKeys", "build_app", "default_auth_database",
           "redact_keys_in_logs", "serve"]

logger = logging.getLogger("spotkit.serve")

_KEY_IN_URL = re.compile(r"(api_key=)[^&\s\"']+", re.IGNORECASE)
_KEY_IN_HEADER = re.compile(r"(apikey\s+)[0-9a-f]{8,}", re.IGNORECASE)


class KeysOnlyAuthenticator(InternalAuthenticator):
    """The ``spotkit`` identity provider: users come in with API keys only.

    Keys are issued by ``spotkit serve keys create USER``; there is no password login
    (every attempt is refused), so this provider adds no way in besides the keys.
    """

    async def authenticate(self, username: str, password: str) -> None:
        """Refuse every password login."""
        return None


class RedactKeys(logging.Filter):
    """A logging filter that replaces API keys in log records (``?api_key=…`` in access
    logs, ``Apikey …`` headers) with ``[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the message and its arguments; always keep the record."""
        if isinstance(record.msg, str):
            record.msg = self._clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(a) if isinstance(a, str) else a
                                for a in record.args)
        return True

    @staticmethod
    def _clean(text: str) -> str:
        return _KEY_IN_HEADER.sub(r"\1[redacted]", _KEY_IN_URL.sub(r"\1[redacted]", text))


#: loggers whose records may carry a request URL or headers
REDACTED_LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn", "tiled", "spotkit")


def redact_keys_in_logs() -> None:
    """Install :class:`RedactKeys` on the server's loggers and their handlers (once)."""
    for name in REDACTED_LOGGERS:
        log = logging.getLogger(name)
        for target in (log, *log.handlers):
            if not any(isinstance(f, RedactKeys) for f in target.filters):
                target.addFilter(RedactKeys())


def default_auth_database(catalog: Any) -> str:
    """The authentication database used when the configuration names none: a SQLite file
    beside a SQLite catalog (``<catalog>.serve-auth.db``), else in the spotkit home."""
    path = getattr(catalog, "path", None)
    if isinstance(path, Path) and path.suffix:
        where = path.with_name(path.name + ".serve-auth.db")
    else:
        from spotkit.config import spotkit_home

        where = Path(spotkit_home()) / "serve-auth.db"
    return f"sqlite:///{where}"


def build_app(catalog: Any, config: ServeConfig | str | os.PathLike, *,
              auth_database: str | None = None) -> Any:
    """The Tiled (FastAPI) application serving ``catalog`` under ``config``.

    Parameters
    ----------
    catalog : spotkit.catalog.Catalog
        An open catalog (SQLite or PostgreSQL).
    config : ServeConfig or path-like
        Staff, user -> proposals, authentication (``serve.yaml``).
    auth_database : str, optional
        SQLAlchemy URL of Tiled's authentication database; default: the configuration's,
        else :func:`default_auth_database`.

    Returns
    -------
    fastapi.FastAPI
        Every request needs an API key (or a token from a configured provider: Tiled's
        ``OIDCAuthenticator`` runs as :class:`spotkit.serve._oidc.OIDCAuthenticator`, the
        same checks with the calls to the provider off the event loop); users see
        the datasets of their proposals, staff all; nothing can be written. Mounts the
        configuration declares are read-only nodes beside the datasets
        (``/api/v1/metadata/<mount>``), for staff, or every user when marked public.
    """
    from tiled.config import Authentication, Database
    from tiled.server.app import build_app as tiled_app

    from spotkit.serve._keys import init_auth_database

    if not isinstance(config, ServeConfig):
        config = load_config(config)
    database = auth_database or config.database or default_auth_database(catalog)
    init_auth_database(database)
    providers = [{"provider": KEYS_PROVIDER,
                  "authenticator": "spotkit.serve._app:KeysOnlyAuthenticator"}]
    for spec in config.providers:
        provider = dict(spec)
        if provider["authenticator"] == TILED_OIDC:  # the same, off the event loop
            provider["authenticator"] = "spotkit.serve._oidc:OIDCAuthenticator"
        providers.append(provider)
    settings: dict[str, Any] = {"providers": providers, "allow_anonymous_access": False}
    keys = config.secret_keys()
    if keys:
        settings["secret_keys"] = keys
    if config.access_token_max_age:
        settings["access_token_max_age"] = config.access_token_max_age
    if config.refresh_token_max_age:
        settings["refresh_token_max_age"] = config.refresh_token_max_age
    authentication = Authentication(**settings)
    server_settings = {"database": Database(uri=database, init_if_not_exists=False)}
    policy: ProposalAccessPolicy = ProposalAccessPolicy(config)
    mounts: dict[str, Any] = {}
    if config.mounts:
        from spotkit.serve._federation_server import FederatedAccessPolicy, build_mounts

        mounts = dict(build_mounts(config))
        policy = FederatedAccessPolicy(config)
    app = tiled_app(CatalogAdapter(catalog, mounts=mounts), authentication=authentication,
                    server_settings=server_settings, access_policy=policy)
    return app


def serve(catalog: Any, config: ServeConfig | str | os.PathLike, *, host: str = "127.0.0.1",
          port: int = 8000, auth_database: str | None = None, log_level: str = "info") -> None:
    """Run the server until interrupted (uvicorn).

    Parameters
    ----------
    catalog : spotkit.catalog.Catalog
    config : ServeConfig or path-like
    host, port : str, int
        Where to listen (use a TLS-terminating proxy in front for ``https://``).
    auth_database : str, optional
        See :func:`build_app`.
    log_level : str
        uvicorn's log level.
    """
    import uvicorn

    app = build_app(catalog, config, auth_database=auth_database)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
    redact_keys_in_logs()  # after uvicorn has configured its loggers
    logger.info("serving the catalog on http://%s:%s/api", host, port)
    server.run()
