"""Access by proposal: a user sees and reads only the datasets of their proposals.

:class:`ProposalAccessPolicy` is a Tiled access policy. Its ``filters`` turn into a proposal
condition inside the catalog's own SQL query (:class:`~spotkit.serve._query.ProposalAccess`),
so listings, counts, pages and searches never include — or count — another proposal's
datasets. Its ``allowed_scopes`` refuse a dataset node (and its arrays) of another proposal
reached directly by id: Tiled then answers 404 "No such entry", exactly as for an id that
does not exist. Nobody may write through the server: the scopes granted are read-only.
"""

from __future__ import annotations

import logging
from typing import Any

from tiled.access_control.access_policies import NO_ACCESS
from tiled.access_control.protocols import AccessPolicy, normalize_access_tags

from spotkit.serve._adapters import CatalogAdapter
from spotkit.serve._config import ServeConfig
from spotkit.serve._query import ProposalAccess

__all__ = ["READ_SCOPES", "ProposalAccessPolicy"]

logger = logging.getLogger("spotkit.serve")

#: the only scopes anyone gets on a node (the server is read-only)
READ_SCOPES = frozenset({"read:metadata", "read:data"})


class ProposalAccessPolicy(AccessPolicy):
    """Tiled access policy: staff see everything, users the datasets of their proposals.

    Parameters
    ----------
    config : ServeConfig
        Staff and user -> proposals (``serve.yaml``).

    Examples
    --------
    >>> import asyncio
    >>> from spotkit.serve._config import parse_config
    >>> policy = ProposalAccessPolicy(parse_config({"staff": ["ann"], "users": {"bo": ["P1"]}}))
    >>> policy.proposals_for(["bo"]), policy.proposals_for(["ann"]), policy.proposals_for(["x"])
    (frozenset({'P1'}), None, frozenset())
    """

    def __init__(self, config: ServeConfig):
        self.config = config

    def proposals_for(self, names: list[str]) -> frozenset[str] | None:
        """The proposals a principal with these identity names may see (None: all)."""
        found: set[str] = set()
        for name in names:
            proposals = self.config.proposals_of(name)
            if proposals is None:
                return None
            found |= proposals
        return frozenset(found)

    def _proposals(self, principal: Any) -> frozenset[str] | None:
        if principal is None:
            return frozenset()
        names = [identity.id for identity in getattr(principal, "identities", None) or []]
        return self.proposals_for(names)

    async def init_node(self, principal: Any, authn_access_tags: Any, authn_scopes: Any,
                        access_tags: Any = None) -> tuple[bool, Any]:
        """Nodes are never created through the server (it is read-only)."""
        return (False, access_tags or normalize_access_tags())

    async def allowed_scopes(self, node: Any, principal: Any, authn_access_tags: Any,
                             authn_scopes: Any) -> set[str]:
        """Read scopes on the catalog and on datasets of the principal's proposals; none
        (so: "no such entry") on anything else."""
        if principal is None:
            return set()
        if isinstance(node, CatalogAdapter):
            return set(READ_SCOPES)
        if not hasattr(node, "proposal"):  # not one of ours: fail closed
            return set()
        proposals = self._proposals(principal)
        if proposals is None or (node.proposal is not None and node.proposal in proposals):
            return set(READ_SCOPES)
        return set()

    async def filters(self, node: Any, principal: Any, authn_access_tags: Any,
                      authn_scopes: Any, scopes: Any) -> Any:
        """On the catalog: the principal's proposals as a query condition."""
        if principal is None:
            return NO_ACCESS
        if not isinstance(node, CatalogAdapter):
            return []
        proposals = self._proposals(principal)
        if proposals is None:
            return []
        return [ProposalAccess(proposals)]
