"""Reading what the alert rules did: the alerted findings kept in the catalog database.

:class:`~spotkit.monitor.Alerts` keeps, per rule and finding, when it was first and last
seen, when it was last sent and whether it still waits (``monitor_alerts``). A dashboard
reads them here in one query, read only: a catalog where no alert was ever kept gives an
empty table and nothing is created.
"""

from __future__ import annotations

import json
from typing import Any

from spotkit.catalog import connect_database, database_errors, mask_url, table_exists
from spotkit.errors import CatalogError
from spotkit.monitor._telemetry import _epoch, _location

__all__ = ["ALERT_COLUMNS", "alert_log"]

#: the columns of :func:`alert_log`
ALERT_COLUMNS = ("rule", "kind", "metric", "beamline", "target", "dataset_id", "severity",
                 "message", "time", "onset", "first_seen", "last_seen", "last_sent",
                 "sends", "pending")


def alert_log(catalog: Any, *, since: Any = None, limit: int = 200):
    """The findings the alert rules took, newest first (read only).

    Parameters
    ----------
    catalog : Catalog, path-like or str
        The catalog whose database keeps the alert state (``Alerts(state=catalog)``, as
        ``spotkit watch`` uses it).
    since : float, datetime or str, optional
        Only findings last seen at or after this time (UTC epoch seconds, ISO 8601, or an
        age such as ``"24h"``).
    limit : int
        At most this many rows.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ALERT_COLUMNS`: the rule, the finding's kind, metric, where,
        severity, message, time and onset, when the rule first and last saw it and last
        sent it (None while it waits), how many messages carried it, and ``pending``
        (True while it waits: a quiet period, a minimum interval, a retry).

    Raises
    ------
    spotkit.errors.CatalogError
        The database cannot be read.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.monitor import AlertRule, Alerts, Finding, LogChannel
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "catalog.db"
    >>> alert_log(db).empty                       # nothing kept yet, nothing created
    True
    >>> with Alerts([AlertRule("ops", LogChannel())], state=db, clock=lambda: 100.0) as a:
    ...     _ = a.dispatch([Finding("quiet", "arrivals", time=100.0, beamline="8.3.2",
    ...                             message="no scan for 2 h", severity="critical")])
    >>> alert_log(db)[["rule", "kind", "beamline", "severity", "sends", "pending"]]
      rule   kind beamline  severity  sends  pending
    0  ops  quiet    8.3.2  critical      1    False
    """
    import pandas as pd

    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, not {limit!r}")
    where, params = "", []
    if since is not None:
        where = " WHERE last_seen >= ?"
        params.append(_epoch(since, "since"))
    sql = ("SELECT rule, finding, severity, first_seen, last_seen, last_sent, sends, "  # noqa: S608
           f"pending FROM monitor_alerts{where} ORDER BY last_seen DESC, rule LIMIT ?")
    location = _location(catalog)
    conn = connect_database(location)
    try:
        rows = conn.execute(sql, (*params, int(limit))).fetchall() \
            if table_exists(conn, "monitor_alerts") else []
    except database_errors() as exc:
        raise CatalogError(f"reading the alerts of {mask_url(str(location))} failed: {exc}"
                           ) from exc
    finally:
        conn.close()
    records = []
    for rule, text, severity, first, last, sent, sends, pending in rows:
        try:
            f = json.loads(text)
        except (TypeError, ValueError):
            f = {}
        records.append({"rule": rule, "kind": f.get("kind"), "metric": f.get("metric"),
                        "beamline": f.get("beamline"), "target": f.get("target"),
                        "dataset_id": f.get("dataset_id"), "severity": severity,
                        "message": f.get("message"), "time": f.get("time"),
                        "onset": f.get("onset"), "first_seen": float(first),
                        "last_seen": float(last),
                        "last_sent": None if sent is None else float(sent),
                        "sends": int(sends), "pending": bool(pending)})
    return pd.DataFrame.from_records(records, columns=list(ALERT_COLUMNS))
