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

Needs the ``serve`` extra: ``pip install "spotkit[serve]"``.
"""

from __future__ import annotations

try:
    import tiled  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        'spotkit.serve needs Tiled: pip install "spotkit[serve]"'
    ) from exc

from spotkit.serve._adapters import CatalogAdapter, DatasetAdapter, HDF5ArrayAdapter
from spotkit.serve._app import build_app, default_auth_database, serve
from spotkit.serve._client import RemoteCatalog, RemoteDataset, open_remote
from spotkit.serve._config import ServeConfig, ServeConfigError, load_config, parse_config
from spotkit.serve._keys import create_api_key, init_auth_database, list_api_keys, revoke_api_keys
from spotkit.serve._policy import ProposalAccessPolicy

__all__ = [
    "CatalogAdapter",
    "DatasetAdapter",
    "HDF5ArrayAdapter",
    "ProposalAccessPolicy",
    "RemoteCatalog",
    "RemoteDataset",
    "ServeConfig",
    "ServeConfigError",
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
