"""Who may open the read-only portal that ``spotkit portal --serve`` runs through Voila.

:class:`PortalIdentityProvider` is the Voila server's identity provider (set with
``--Voila.identity_provider_class``; it runs in the Voila process). It lets in:

- whoever has the server's token (``?token=...`` once, then a cookie), as Voila and
  JupyterLab do: the token is random for each run unless given;
- with a serve configuration (``--config serve.yaml``), staff who bring one of their API
  keys of ``spotkit serve`` (``?api_key=...`` once, or the header ``Authorization: Apikey
  KEY``): the same keys, looked up the way Tiled looks them up (its
  ``lookup_valid_api_key``: SHA-256 of the secret, expiry) in the same database. Only staff:
  the portal shows the whole catalog, while ``spotkit serve`` shows a user only the
  datasets of their proposals, which the portal does not filter.

The settings come from the environment the CLI gives the Voila process (:data:`KEYS_DB_ENV`,
:data:`STAFF_ENV`), so nothing secret is on a command line.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from jupyter_server.auth.identity import User
from voila.voila_identity_provider import VoilaIdentityProvider

__all__ = ["KEYS_DB_ENV", "STAFF_ENV", "PortalIdentityProvider", "staff_user_of_key"]

logger = logging.getLogger("spotkit.cli")

#: SQLAlchemy URL of ``spotkit serve``'s key database (no key login when unset).
KEYS_DB_ENV = "SPOTKIT_PORTAL_KEYS_DATABASE"
#: Comma-separated staff user names (from the serve configuration).
STAFF_ENV = "SPOTKIT_PORTAL_STAFF"


def _async_url(url: str) -> str:
    from tiled.utils import ensure_specified_sql_driver

    return str(ensure_specified_sql_driver(url))


async def staff_user_of_key(database: str, secret_hex: str,
                            staff: frozenset[str]) -> str | None:
    """The staff user whose valid API key ``secret_hex`` is, else None.

    Parameters
    ----------
    database : str
        SQLAlchemy URL of the key database (as ``spotkit serve keys`` uses).
    secret_hex : str
        The key as handed to the user (hex).
    staff : frozenset of str
        Who may use the portal.
    """
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from tiled.authn_database.core import lookup_valid_api_key

    try:
        secret = bytes.fromhex(secret_hex)
    except ValueError:
        return None
    engine = create_async_engine(_async_url(database))
    try:
        async with AsyncSession(engine, expire_on_commit=False) as db:
            key = await lookup_valid_api_key(db, secret)
            if key is None:
                return None
            names = [identity.id for identity in key.principal.identities]
    finally:
        await engine.dispose()
    for name in names:
        if name in staff:
            return name
    logger.warning("portal: refused a valid API key of %s (not staff)", ", ".join(names))
    return None


def _key_of(handler: Any) -> str | None:
    header = handler.request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "apikey" and value.strip():
        return value.strip()
    value = handler.get_argument("api_key", "")
    return value.strip() or None


class PortalIdentityProvider(VoilaIdentityProvider):
    """Voila's token, or a staff API key of ``spotkit serve`` (see the module)."""

    async def get_user_token(self, handler: Any) -> User | None:
        """The user of the request's token or API key (None: neither is valid)."""
        user = await super().get_user_token(handler)
        if user is not None:
            return user
        database = os.environ.get(KEYS_DB_ENV, "")
        secret = _key_of(handler)
        if not database or not secret:
            return None
        staff = frozenset(n for n in os.environ.get(STAFF_ENV, "").split(",") if n)
        try:
            name = await staff_user_of_key(database, secret, staff)
        except Exception:  # a broken key database refuses, it does not crash the server
            logger.exception("portal: could not check an API key")
            return None
        return None if name is None else User(username=name, name=name)
