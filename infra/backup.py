"""`just backup` and `just restore`: logical dumps per service database, and pgBackRest's physical backups.

    just backup                     every service database -> backups/YYYYMMDD_HHMMSS_<db>.backup
    just backup order catalog       only these services' databases
    just backup --full | --incr     a pgBackRest full or incremental backup of the whole cluster
    just backup --info              pgBackRest's backups, then the archive's size and the WAL a recovery replays
    just backup --expire [--keep-full N] [--dry-run]
                                    remove what retention allows (30 days); with --keep-full, every full
                                    backup but the newest N and the WAL before them (a recovery to an earlier
                                    time is then impossible)
    just restore order backups/20261126_031500_order_db.backup

Dumps are ``pg_dump --format=custom --compress=9`` (the seed's format and names), taken as the superuser
over the private socket so ownership, grants and the outbox publication come back as they were. A restore
is ``pg_restore --clean --if-exists --single-transaction``: readers see the old tables or the restored ones,
never a half-restored database. Restoring a database that a consumer group writes (its inbox and
projections) while the group runs loses what it applied after the dump: stop the group first
(docs/operations.md, "Backups": before restoring a database).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from apps.common.topology import BY_NAME, SERVICES, ServiceSpec, pg_port
from infra import backup_physical, postgres, proc
from infra.paths import REPO

BACKUPS = REPO / "backups"


def dump_name(spec: ServiceSpec, at: dt.datetime) -> str:
    """The seed's file name: YYYYMMDD_HHMMSS_<database>.backup (UTC)."""
    return f"{at.astimezone(dt.UTC):%Y%m%d_%H%M%S}_{spec.database}.backup"


def _pg_argv(tool: str, database: str) -> list[str]:
    argv = [str(postgres.BIN / tool), "-h", str(postgres.SOCKET_DIR), "-p", str(pg_port()), "-U", "postgres"]
    argv += ["-d", database]
    return argv if os.geteuid() != 0 else ["runuser", "-u", postgres.os_user(), "--", *argv]


def dump(spec: ServiceSpec, folder: Path = BACKUPS, at: dt.datetime | None = None) -> Path:
    """One database as a custom-format archive; our process writes the file (the postgres user may not).

    Owner-only (0600, a new folder 0700): a dump is the whole database, which the cluster keeps in a 0700
    directory; written with the umask, every local user could read it (session 29, S).
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = folder / dump_name(spec, at or dt.datetime.now(dt.UTC))
    partial = target.with_suffix(".partial")
    handle = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(handle, 0o600)  # a .partial left by a failed run keeps its mode through O_CREAT
    with os.fdopen(handle, "wb") as out:
        result = subprocess.run(
            [*_pg_argv("pg_dump", spec.database), "--format=custom", "--compress=9"],
            stdout=out,
            stderr=subprocess.PIPE,
            check=False,
        )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise SystemExit(f"pg_dump {spec.database} failed: {result.stderr.decode().strip()}")
    partial.rename(target)
    return target


def restore(spec: ServiceSpec, archive: Path) -> None:
    """pg_restore --clean --if-exists in one transaction, read from our own handle on the file.

    Everything but the outbox publication itself: dropping and re-creating it would leave Debezium's slot
    unable to decode past that point ("publication ... does not exist" for every change after it, so the
    connector fails for good). The publication stays; its tables are re-added as the archive lists them.
    """
    toc = table_of_contents(archive)
    dumped = dumped_database(toc)
    if dumped != spec.database:
        # pg_restore --clean would drop and create another database's tables in this one, under its roles.
        raise SystemExit(
            f"{archive} is a dump of {dumped or 'an unnamed database'}, not {spec.database}: "
            f"`just restore {spec.name}` takes a *_{spec.database}.backup"
        )
    with tempfile.TemporaryDirectory() as folder:
        listing = Path(folder) / "restore.list"
        listing.write_text(without_publication(toc))
        Path(folder).chmod(0o755)  # the postgres user reads the list
        listing.chmod(0o644)
        with archive.open("rb") as source:
            result = subprocess.run(
                [
                    *_pg_argv("pg_restore", spec.database),
                    "--clean",
                    "--if-exists",
                    "--single-transaction",
                    f"--use-list={listing}",
                ],
                stdin=source,
                stderr=subprocess.PIPE,
                check=False,
            )
    if result.returncode != 0:
        raise SystemExit(f"pg_restore {spec.database} failed: {result.stderr.decode().strip()}")


def table_of_contents(archive: Path) -> str:
    """``pg_restore --list`` of a dump; a file pg_restore cannot read is refused with its own words."""
    with archive.open("rb") as source:
        result = subprocess.run(["pg_restore", "--list"], stdin=source, capture_output=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{archive} is not a dump pg_restore can read: {result.stderr.decode().strip()}")
    return result.stdout.decode()


def dumped_database(toc: str) -> str | None:
    """The database a dump was taken from, as its table of contents' header names it (``;     dbname: x``)."""
    for line in toc.splitlines():
        key, _, value = line.lstrip("; \t").partition(":")
        if key.strip().lower() == "dbname":
            return value.strip()
    return None


def without_publication(toc: str) -> str:
    """The table of contents without the PUBLICATION entries (its PUBLICATION TABLE ones stay)."""
    return "".join(line for line in toc.splitlines(keepends=True) if not _is_publication(line))


def _is_publication(toc_line: str) -> bool:
    # "3395; 6104 16915 PUBLICATION - analytics_outbox analytics_svc", not "... PUBLICATION TABLE public ..."
    return " PUBLICATION - " in toc_line


def writers(spec: ServiceSpec) -> list[tuple[str, str]]:
    """(group, stack component) of every consumer group whose inbox and projection are in ``spec``'s database."""
    from infra.replay import consumer_components
    from outbox import groups

    return [
        (module.group.name, component)
        for module in groups.consumer_modules()
        if groups.database_url(module).rsplit("/", 1)[-1].split("?")[0] == spec.database
        for component in consumer_components(module.group.name)
    ]


def _services(names: list[str]) -> list[ServiceSpec]:
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown service(s) {', '.join(unknown)}; one of: {', '.join(BY_NAME)}")
    return [BY_NAME[n] for n in names] if names else list(SERVICES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("services", nargs="*", help="service names (default: all) for logical dumps")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--full", action="store_true", help="pgBackRest full backup of the cluster")
    kind.add_argument("--incr", action="store_true", help="pgBackRest incremental backup of the cluster")
    kind.add_argument("--info", action="store_true", help="list pgBackRest's backups")
    kind.add_argument("--schedule", action="store_true", help="print the cron file for /etc/cron.d")
    kind.add_argument("--expire", action="store_true", help="pgBackRest expire: what retention allows, or --keep-full")
    parser.add_argument("--keep-full", type=int, metavar="N", help="with --expire: keep only the newest N full backups")
    parser.add_argument("--dry-run", action="store_true", help="with --expire: say what would go, remove nothing")
    parser.add_argument("--restore", nargs=2, metavar=("SERVICE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if (args.keep_full is not None or args.dry_run) and not args.expire:
        parser.error("--keep-full and --dry-run go with --expire")
    if args.keep_full is not None and args.keep_full < 1:
        parser.error("--keep-full must be at least 1: without a full backup there is no recovery")
    if args.restore:
        spec, archive = _services([args.restore[0]])[0], Path(args.restore[1])
        if not archive.is_file():
            raise SystemExit(f"no such backup file: {archive}")
        if running := [(group, component) for group, component in writers(spec) if proc.running(component)]:
            group, component = running[0]
            raise SystemExit(
                f"{component} is running and applies group {group} to {spec.database}: what it applied since the "
                f"dump would be lost for good. `just stop {component}`, restore, then `just replay {group} "
                f"--to-datetime <the dump's time, a minute earlier> --restart` (docs/operations.md, Backups)"
            )
        restore(spec, archive)
        print(f"restored {spec.database} from {archive}")
    elif args.full or args.incr:
        entry = backup_physical.backup("full" if args.full else "incr")
        print(f"pgbackrest {entry['type']} backup {entry['label']} done")
    elif args.info:
        print(backup_physical.pgbackrest("info").stdout, end="")
        print(f"\n{backup_physical.state().summary()}")
    elif args.expire:
        before = backup_physical.state()
        said = backup_physical.expire(args.keep_full, dry_run=args.dry_run)
        print(said or "nothing to expire")
        if not args.dry_run:
            after = backup_physical.state()
            freed = backup_physical.size(before.archive_bytes - after.archive_bytes)
            print(
                f"WAL archive {backup_physical.size(before.archive_bytes)} -> "
                f"{backup_physical.size(after.archive_bytes)} ({freed} freed)"
            )
    elif args.schedule:
        print(backup_physical.schedule(), end="")
    else:
        for spec in _services(args.services):
            print(dump(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
