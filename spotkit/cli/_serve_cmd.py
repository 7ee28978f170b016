"""``spotkit serve``: the catalog as a Tiled service; ``spotkit serve keys``: users' API keys.

Hooked into the parser by :func:`add_serve_parser` (one call in ``_main.build_parser``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from spotkit.cli._output import _out, _table
from spotkit.cli._types import _port
from spotkit.errors import SpotkitError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """argparse type: ``90d``, ``12h``, ``30m`` or seconds."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; write e.g. 90d, 12h, 30m or 3600 (seconds)")
    return float(match.group(1)) * _UNIT[match.group(2)]


def _serve_module():
    try:
        import spotkit.serve as serve
    except ImportError as exc:
        raise SpotkitError(f"{exc}. `spotkit serve` runs a Tiled server; install it with "
                           'pip install "spotkit[serve]"') from None
    return serve


def _open(args):
    from spotkit.catalog import open_catalog

    return open_catalog(args.catalog, create=False)


def _database(args, serve, config) -> str:
    if args.auth_database:
        return args.auth_database
    if config.database:
        return config.database
    with _open(args) as cat:
        return serve.default_auth_database(cat)


def _need_config(args) -> None:
    if args.config is None:
        raise SpotkitError("spotkit serve needs --config serve.yaml (staff, users and their "
                           "proposals); see `spotkit serve --help`")


def cmd_serve(args) -> int:
    """Run the server until Ctrl-C."""
    _need_config(args)
    serve = _serve_module()
    config = serve.load_config(args.config)
    cat = _open(args)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        import logging

        logging.getLogger("spotkit.cli").warning(
            "serving on %s over plain HTTP: put a TLS proxy (nginx, Caddy) in front and give "
            "users its https:// URL, so that API keys never cross the network in clear text",
            args.host)
    _out(f"spotkit serve: http://{args.host}:{args.port}/api  (catalog {cat.path}; "
         f"{len(config.staff)} staff, {len(config.users)} users). Ctrl-C stops it.")
    try:
        serve.serve(cat, config, host=args.host, port=args.port,
                    auth_database=args.auth_database,
                    log_level="warning" if args.quiet else "info")
    finally:
        cat.close()
    return 0


def cmd_keys(args) -> int:
    """Create, list or revoke API keys."""
    _need_config(args)
    serve = _serve_module()
    config = serve.load_config(args.config)
    database = _database(args, serve, config)
    if args.keys_command == "create":
        user = args.user.strip()
        if config.proposals_of(user) == frozenset():
            import logging

            logging.getLogger("spotkit.cli").warning(
                "%s is neither staff nor a user with proposals in %s: the key will let them "
                "in, but they will see no dataset", user, config.path)
        key = serve.create_api_key(database, user, expires_in=args.expires, note=args.note)
        _out(key)
        if not args.quiet:
            import sys

            sys.stderr.write(f"API key for {user} (shown only now; it is stored hashed). "
                             "Use it as api_key=... in spotkit.open_catalog(URL) or "
                             "tiled.client.from_uri(URL), or the header "
                             "'Authorization: Apikey KEY'.\n")
        return 0
    if args.keys_command == "list":
        rows = [{"user": k.user, "key": k.first_eight + "…", "note": k.note or "",
                 "expires": k.expires.isoformat(timespec="minutes") if k.expires else "never",
                 "last_used": (k.latest_activity.isoformat(timespec="minutes")
                               if k.latest_activity else "")}
                for k in serve.list_api_keys(database, args.user)]
        _out(_table(rows, ["user", "key", "note", "expires", "last_used"]))
        return 0
    n = serve.revoke_api_keys(database, args.user, first_eight=args.key)
    if n == 0:
        raise SpotkitError(f"no API key of {args.user!r}"
                           + (f" starting with {args.key!r}" if args.key else "")
                           + "; list them with `spotkit serve keys list`")
    _out(f"revoked {n} API key{'s' if n != 1 else ''} of {args.user}")
    return 0


def add_serve_parser(sub, common) -> None:
    """Add ``serve`` (and ``serve keys create|list|revoke``) to the sub-command parsers."""
    config_help = "the serve configuration (staff, user -> proposals, authentication)"
    auth_help = ("SQLAlchemy URL of the API-key database (default: the config's "
                 "authentication.database, else <catalog>.serve-auth.db)")
    sv = sub.add_parser(
        "serve", parents=common,
        help="serve the catalog over HTTP (Tiled): API keys, access by proposal",
        description="Serve the catalog as a Tiled server: datasets searchable by field and "
        "read as arrays on the server, for users with an API key, each seeing the datasets "
        "of their proposals (staff: all). Read-only.")
    sv.add_argument("--config", type=Path, help=config_help + " (required)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on "
                    "(default: %(default)s)")
    sv.add_argument("--port", type=_port, default=8000, help="port (default: %(default)s)")
    sv.add_argument("--auth-database", help=auth_help)
    sv.set_defaults(func=cmd_serve)
    ssub = sv.add_subparsers(dest="serve_command", metavar="ACTION")
    keys = ssub.add_parser("keys", parents=common, help="issue, list or revoke users' API keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    for name, text in (("create", "issue a key for a user (printed once)"),
                       ("list", "list keys (never their secrets)"),
                       ("revoke", "delete a user's keys")):
        a = ksub.add_parser(name, parents=common, help=text, description=text)
        a.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                       help=config_help + " (required)")
        a.add_argument("--auth-database", default=argparse.SUPPRESS, help=auth_help)
        if name == "list":
            a.add_argument("--user", help="only this user's keys")
        else:
            a.add_argument("user", help="user name as in the config's staff / users")
        if name == "create":
            a.add_argument("--expires", type=_duration, help="lifetime: 90d, 12h, 3600 "
                           "(default: never)")
            a.add_argument("--note", help="kept with the key (who, why)")
        if name == "revoke":
            a.add_argument("--key", help="only the key starting with these 8 characters")
        a.set_defaults(func=cmd_keys)
