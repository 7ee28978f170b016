"""Per-user API keys in Tiled's authentication database.

Keys are made the way Tiled makes them (36 random bytes; the database keeps the first
eight hex characters to find a key and the SHA-256 of the secret, never the secret itself)
for a principal whose identity is ``(KEYS_PROVIDER, user)``. The secret is returned once,
to hand to the user; it cannot be read back later.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import hashlib
import logging
import secrets
import warnings
from dataclasses import dataclass
from typing import Any

from spotkit.serve._config import KEYS_PROVIDER

__all__ = ["ApiKeyInfo", "create_api_key", "init_auth_database", "list_api_keys",
           "revoke_api_keys"]

logger = logging.getLogger("spotkit.serve")


@dataclass(frozen=True)
class ApiKeyInfo:
    """An issued key, as the database describes it (never the secret)."""

    user: str
    first_eight: str
    note: str | None
    expires: _dt.datetime | None
    latest_activity: _dt.datetime | None


def _async_url(url: str) -> str:
    from tiled.utils import ensure_specified_sql_driver

    return str(ensure_specified_sql_driver(url))


async def _init(url: str) -> bool:
    from sqlalchemy.ext.asyncio import create_async_engine
    from tiled.alembic_utils import UninitializedDatabase, check_database
    from tiled.authn_database.core import ALL_REVISIONS, REQUIRED_REVISION, initialize_database

    engine = create_async_engine(url)
    try:
        try:
            await check_database(engine, REQUIRED_REVISION, ALL_REVISIONS)
        except UninitializedDatabase:
            await initialize_database(engine)
            return True
        return False
    finally:
        await engine.dispose()


def init_auth_database(url: str) -> bool:
    """Create Tiled's authentication tables at ``url`` if they are not there.

    Returns
    -------
    bool
        True if the database was initialised now.
    """
    from tiled.alembic_utils import stamp_head
    from tiled.authn_database.alembic_constants import ALEMBIC_DIR, ALEMBIC_INI_TEMPLATE_PATH

    full = _async_url(url)
    created = asyncio.run(_init(full))
    if created:
        with warnings.catch_warnings():  # alembic's note on Tiled's own alembic.ini template
            warnings.filterwarnings("ignore", "No path_separator", DeprecationWarning)
            stamp_head(ALEMBIC_INI_TEMPLATE_PATH, ALEMBIC_DIR, full)
        logger.info("initialised the authentication database")
    _wal(url)
    return created


def _wal(url: str) -> None:
    """Put a SQLite authentication database in WAL mode (kept in the file).

    Tiled records each API key's latest use on every request, a write transaction per
    request; in WAL mode that commit appends to the log instead of rewriting a rollback
    journal (fewer fsyncs), and readers never wait for it.
    """
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return
    import sqlite3

    with contextlib.closing(sqlite3.connect(parsed.database, timeout=30)) as conn:
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")


async def _session(url: str) -> Any:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    engine = create_async_engine(url)
    return engine, AsyncSession(engine, expire_on_commit=False)


async def _create(url: str, user: str, expires_in: float | None, note: str | None) -> str:
    from tiled.authn_database import orm
    from tiled.authn_database.core import get_or_create_principal

    engine, db = await _session(url)
    try:
        async with db:
            principal = await get_or_create_principal(db, KEYS_PROVIDER, user)
            secret = secrets.token_bytes(4 + 32)
            expires = (None if expires_in is None else
                       _dt.datetime.now(_dt.UTC) + _dt.timedelta(seconds=expires_in))
            db.add(orm.APIKey(
                principal_id=principal.id, expiration_time=expires, note=note,
                scopes=["inherit"], access_tags=None, first_eight=secret.hex()[:8],
                hashed_secret=hashlib.sha256(secret).digest()))
            await db.commit()
            return secret.hex()
    finally:
        await engine.dispose()


def create_api_key(database: str, user: str, *, expires_in: float | None = None,
                   note: str | None = None) -> str:
    """Issue an API key for ``user``; return its secret (shown once, stored hashed).

    Parameters
    ----------
    database : str
        SQLAlchemy URL of the authentication database (initialised if new).
    user : str
        The user name, as in the serve configuration's ``staff`` and ``users``.
    expires_in : float, optional
        Seconds until the key expires (default: never).
    note : str, optional
        Stored with the key (e.g. who asked for it).

    Returns
    -------
    str
        The key (72 hex characters). Give it to the user; it cannot be shown again.
    """
    if not isinstance(user, str) or not user.strip():
        raise ValueError(f"user must be a non-empty name, not {user!r}")
    if expires_in is not None and expires_in <= 0:
        raise ValueError(f"expires_in must be positive seconds, not {expires_in!r}")
    init_auth_database(database)
    key = asyncio.run(_create(_async_url(database), user.strip(), expires_in, note))
    logger.info("issued an API key %s… for %s", key[:8], user)
    return key


async def _keys(url: str, user: str | None) -> list[Any]:
    from sqlalchemy.future import select
    from sqlalchemy.orm import selectinload
    from tiled.authn_database import orm

    engine, db = await _session(url)
    try:
        async with db:
            rows = (await db.execute(
                select(orm.APIKey).options(
                    selectinload(orm.APIKey.principal).selectinload(orm.Principal.identities))
            )).scalars().all()
            out = []
            for row in rows:
                names = [i.id for i in row.principal.identities] if row.principal else []
                if user is None or user in names:
                    out.append((row, names))
            return out
    finally:
        await engine.dispose()


def list_api_keys(database: str, user: str | None = None) -> list[ApiKeyInfo]:
    """The keys issued (all users, or one), without their secrets."""
    init_auth_database(database)
    rows = asyncio.run(_keys(_async_url(database), user))
    return [ApiKeyInfo(user=",".join(names), first_eight=row.first_eight, note=row.note,
                       expires=row.expiration_time, latest_activity=row.latest_activity)
            for row, names in rows]


async def _revoke(url: str, user: str, first_eight: str | None) -> int:
    from sqlalchemy import delete
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from tiled.authn_database import orm

    hashes = [row.hashed_secret for row, _ in await _keys(url, user)
              if first_eight is None or row.first_eight == first_eight]
    if not hashes:
        return 0
    engine = create_async_engine(url)
    try:
        async with AsyncSession(engine) as db:
            await db.execute(delete(orm.APIKey).where(orm.APIKey.hashed_secret.in_(hashes)))
            await db.commit()
    finally:
        await engine.dispose()
    return len(hashes)


def revoke_api_keys(database: str, user: str, *, first_eight: str | None = None) -> int:
    """Delete ``user``'s keys (all, or the one starting with ``first_eight``); return how
    many were deleted."""
    init_auth_database(database)
    return asyncio.run(_revoke(_async_url(database), user, first_eight))
