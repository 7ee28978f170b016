"""``spotkit serve``: the catalog as a Tiled service, with API keys and access by proposal.

Presentation layer (like :mod:`spotkit.cli`): it reads the catalog only through its public
API (:func:`spotkit.catalog.open_catalog`, ``search``, :class:`~spotkit.catalog.Dataset`,
derived datasets, frame marks), so it serves a SQLite or a PostgreSQL catalog alike.

* :func:`build_app` / :func:`serve` — the Tiled application (FastAPI) and the server.
  Datasets are nodes keyed by id, newest first; search by ``beamline``, ``sample``,
  ``proposal``, ``kind``, ``status`` (``Eq``, ``In``, ``Contains``), ``start_time``
  (``Comparison``) and free text (``FullText``) runs as one catalog query. Arrays (raw
  projections, flats, darks, theta; frame series; derived volumes; I(q) tables) are read on
  the server from the dataset's file, a whole slab per request.
* :class:`ProposalAccessPolicy` — users see the datasets of their proposals, staff all
  (``serve.yaml``, :func:`load_config`); another proposal's dataset is "no such entry".
* :func:`create_api_key`, :func:`list_api_keys`, :func:`revoke_api_keys` — per-user keys
  in Tiled's authentication database (stored as SHA-256 hashes).
* :func:`open_remote` — the read-only client a notebook uses
  (``spotkit.open_catalog("https://host/api", api_key=...)``).
* :class:`FederatedCatalog` — the local catalog plus read-only mounts (another
  ``spotkit serve``, a plain Tiled server, an intake catalog) searched in one call; each
  :class:`Hit` names its source. ``serve.yaml`` can declare mounts that the server shows as
  read-only nodes beside the local datasets; a slow or dead mount is asked in its own
  threads with its timeout as deadline (504/502 naming it), never holding the server.
* OIDC logins: Tiled's ``OIDCAuthenticator`` in ``serve.yaml`` runs with its calls to the
  identity provider off the server's event loop (:mod:`spotkit.serve._oidc`).

Needs the ``serve`` extra: ``pip install "spotkit[serve]"``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

try:
    import tiled  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        'spotkit.serve needs Tiled: pip install "spotkit[serve]"'
    ) from exc

#: where each public name lives; the server side (FastAPI, uvicorn, h5py adapters) is only
#: imported when used, so a notebook needs only Tiled's client for :func:`open_remote`
_WHERE = {
    "CatalogAdapter": "_adapters", "DatasetAdapter": "_adapters",
    "HDF5ArrayAdapter": "_adapters",
    "build_app": "_app", "default_auth_database": "_app", "serve": "_app",
    "RemoteCatalog": "_client", "RemoteDataset": "_client", "open_remote": "_client",
    "ServeConfig": "_config", "ServeConfigError": "_config", "load_config": "_config",
    "parse_config": "_config",
    "create_api_key": "_keys", "init_auth_database": "_keys", "list_api_keys": "_keys",
    "revoke_api_keys": "_keys",
    "ProposalAccessPolicy": "_policy",
    "FederatedCatalog": "_federation", "FederatedResult": "_federation",
    "FederationError": "_federation", "Hit": "_federation", "IntakeMount": "_federation",
    "TiledMount": "_federation",
}

__all__ = [
    "CatalogAdapter",
    "DatasetAdapter",
    "FederatedCatalog",
    "FederatedResult",
    "FederationError",
    "HDF5ArrayAdapter",
    "Hit",
    "IntakeMount",
    "ProposalAccessPolicy",
    "RemoteCatalog",
    "RemoteDataset",
    "ServeConfig",
    "ServeConfigError",
    "TiledMount",
    "build_app",
    "create_api_key",
    "default_auth_database",
    "init_auth_database",
    "list_api_keys",
    "load_config",
    "open_remote",
    "parse_config",
    "revoke_api_keys",
    "serve",
]

if TYPE_CHECKING:
    from spotkit.serve._adapters import CatalogAdapter, DatasetAdapter, HDF5ArrayAdapter
    from spotkit.serve._app import build_app, default_auth_database, serve
    from spotkit.serve._client import RemoteCatalog, RemoteDataset, open_remote
    from spotkit.serve._config import ServeConfig, ServeConfigError, load_config, parse_config
    from spotkit.serve._federation import (
        FederatedCatalog,
        FederatedResult,
        FederationError,
        Hit,
        IntakeMount,
        TiledMount,
    )
    from spotkit.serve._keys import (
        create_api_key,
        init_auth_database,
        list_api_keys,
        revoke_api_keys,
    )
    from spotkit.serve._policy import ProposalAccessPolicy


def __getattr__(name: str):
    """Import the module of a public name the first time it is used."""
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
