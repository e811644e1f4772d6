"""``astra-db``: migrate the ASTRA database and show its revision.

Exits 0 on success; on failure prints one line to stderr and exits 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from astra_common.db.engine import DEFAULT_DATABASE_URL, display_url

DATABASE_URL_ENV = "ASTRA_DATABASE_URL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astra-db", description="Migrate the ASTRA database and show its revision."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    url_help = f"database URL (default: ${DATABASE_URL_ENV}, else {DEFAULT_DATABASE_URL})"

    upgrade = commands.add_parser("upgrade", help="migrate the database to a revision")
    upgrade.add_argument("revision", nargs="?", default="head", help="target (default: head)")
    current = commands.add_parser("current", help="print the revision the database is at")
    revision = commands.add_parser(
        "revision", help="write a new migration from the models (database must be at head)"
    )
    revision.add_argument("-m", "--message", required=True, help="what the migration does")
    for command in (upgrade, current, revision):
        command.add_argument("--url", default=None, help=url_help)
    return parser


def _error_line(exc: BaseException) -> str:
    # SQLAlchemy and libpq messages span lines (hints, a link); the first one says what broke.
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``astra-db``; returns the exit status."""
    args = _parser().parse_args(argv)
    database_url = args.url or os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL
    # Imported here: Alembic is slow to import and --help should stay quick.
    from astra_common.db import migrate

    try:
        if args.command == "upgrade":
            migrate.upgrade(database_url, args.revision)
            print(f"{display_url(database_url)} is at {migrate.current(database_url)}")
        elif args.command == "current":
            revision = migrate.current(database_url)
            latest = migrate.head()
            status = "head" if revision == latest else f"head is {latest}"
            print(f"{revision or 'none (not migrated)'} ({status})")
        else:
            print(migrate.make_revision(database_url, args.message))
    except Exception as exc:  # one readable line rather than a traceback, whatever failed
        print(
            f"astra-db {args.command}: {display_url(database_url)}: {_error_line(exc)}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
