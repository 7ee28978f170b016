"""Constants and helpers shared by the parts of :class:`~spotkit.catalog.Catalog`."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from spotkit.catalog._dataset import Dataset

logger = logging.getLogger("spotkit.catalog._catalog")

#: ``queued``: submitted to a batch scheduler, not started; ``running``: the notebook runs;
#: then one of the final states (``cancelled``: the job was cancelled before it finished).
RUN_STATES = ("queued", "running", "completed", "failed", "cancelled")
FINAL_RUN_STATES = ("completed", "failed", "cancelled")
_WILDCARD = re.compile(r"[*?\[]")
_NAME = re.compile(r"[a-z][a-z0-9_.-]*")
_OUTPUT_KEYS = {"path", "kind", "role", "format", "key", "metadata", "title"}
_FILE_KEYS = {"path", "role", "format", "key"}

_DS_COLUMNS = (
    "d.id, d.kind, d.beamline, d.sample, d.proposal, d.title, d.start_time, d.end_time, "
    "d.ingested_at, d.status, d.run_id, d.metadata"
)
_RUN_COLUMNS = (
    "id, dataset_id, notebook, notebook_sha256, parameters, target, state, started_at, "
    "ended_at, output_notebook, error_cell, error_name, error_message, versions, job_id, "
    "context"
)
_CHUNK = 900  # ids per "IN (...)" query, well under SQLite's variable limit

# SQL text is assembled only from the constants above, fixed column names and "?"
# placeholders (hence the `noqa: S608`); every value goes in as a bound parameter.


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, _dt.datetime | _dt.date):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value or {}, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} must be JSON-serialisable (str, numbers, lists, dicts): {exc}"
        ) from None


def _flatten_text(value: Any, out: list[str]) -> list[str]:
    """Collect the keys and scalar values of nested metadata as words for text search."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            out.append(str(key))
            _flatten_text(item, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _flatten_text(item, out)
    elif value is not None and not isinstance(value, bool):
        out.append(str(value))
    return out


def _fts_query(text: str) -> str:
    """Turn user text into an FTS5 query: every word must occur; ``word*`` is a prefix."""
    terms = []
    for word in text.split():
        prefix = word.endswith("*")
        word = word.rstrip("*").replace('"', '""')
        if any(ch.isalnum() for ch in word):
            terms.append(f'"{word}"' + ("*" if prefix else ""))
    return " ".join(terms)


def _plain(text: str) -> str:
    """Text without diacritics ("Élan" -> "Elan"), as FTS5's ``remove_diacritics 2``."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


# FTS5's unicode61 tokens are runs of letters and digits; everything else separates them.
# PostgreSQL's parser would keep "bone-0421" as 'bone' and the signed integer '-0421', so
# the catalog splits the text itself before to_tsvector / to_tsquery.
_SEPARATORS = re.compile(r"[\W_]+")


def _fts_document(fields: Iterable[Any], metadata: Any) -> str:
    """The words a PostgreSQL catalog indexes for a dataset (its tsvector's source)."""
    words = [str(f) for f in fields if f is not None]
    return _SEPARATORS.sub(" ", _plain(" ".join(words + _flatten_text(metadata, []))))


def _tsquery(text: str) -> str:
    """User text as a PostgreSQL ``to_tsquery('simple', ...)`` query: every word must occur;
    ``word*`` is a prefix (the FTS5 rules of :func:`_fts_query`). Each word is quoted, so
    no user text is read as tsquery operators."""
    terms = []
    for word in text.split():
        prefix = word.endswith("*")
        # a word of several tokens ("bone-0421", "8.3.2") is a phrase, as in FTS5
        parts = [f"'{p}'" for p in _SEPARATORS.split(_plain(word.rstrip("*"))) if p]
        if parts:
            parts[-1] += ":*" if prefix else ""
            terms.append(parts[0] if len(parts) == 1 else "(" + " <-> ".join(parts) + ")")
    return " & ".join(terms)


def _glob_regex(pattern: str) -> str:
    """A SQLite GLOB pattern (``*``, ``?``, ``[abc]``, ``[^abc]``; case-sensitive) as an
    anchored POSIX regular expression for PostgreSQL's ``~``."""
    out, i = ["^"], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("]", "^") else i + 1)
            if end < 0:
                out.append("\\[")
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith("^")
                body = body[1:] if negate else body
                body = body.replace("\\", "\\\\")
                out.append("[" + ("^" if negate else "") + body + "]")
                i = end
        else:
            out.append(re.escape(ch) if not ch.isalnum() else ch)
        i += 1
    out.append("$")
    return "".join(out)


def _glob_like(pattern: str) -> str | None:
    """A GLOB pattern with only ``*`` and ``?`` as a LIKE pattern (escape ``\\``), which
    PostgreSQL answers from a btree index when it has a fixed prefix; None if it has a
    ``[...]`` class (then use :func:`_glob_regex`)."""
    if "[" in pattern:
        return None
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not valid; use a lower-case word such as 'raw', 'derived' "
            "or 'quarantined' (letters, digits, '_', '-', '.')"
        )
    return value


def _dataset_id(value: Any) -> str:
    return value.id if isinstance(value, Dataset) else str(value)
