"""A throwaway PostgreSQL server for tests (the Optuna storage of the cluster mode).

Uses `SWEETSPOT_TEST_DATABASE_URL` when set; otherwise starts a private server from the PostgreSQL binaries
on a free port in a temporary directory (as the `postgres` user when running as root: PostgreSQL refuses to
run as root), and removes it afterwards.

Every login is checked with a password (scram-sha-256), as on a real server: the superuser's is made up per
server, and the operator logs in as a role of its own (`OPERATOR_ROLE`), owner of its database and nothing more,
so a wrong password is refused in tests as it would be in a cluster.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from support.ports import PortTakenError, start_on_free_port

ENV_URL = "SWEETSPOT_TEST_DATABASE_URL"
OPERATOR_ROLE = "sweetspot_operator_" + secrets.token_hex(4)
"""The operator's role, one per test process: two sessions (or pytest-xdist workers) on one server
(`SWEETSPOT_TEST_DATABASE_URL`) each set their own role's password, never the other's."""
OPERATOR_PASSWORD = "operator-" + secrets.token_hex(8)


def _bindir() -> Path:
    if found := shutil.which("pg_ctl"):
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not candidates:
        raise RuntimeError(
            "PostgreSQL server binaries not found: apt-get install postgresql (tests need a real server)"
        )
    return Path(candidates[-1]).parent


class PostgresServer:
    def __init__(self) -> None:
        self.bindir = _bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="sweetspot-pg-"))
        self.port = 0
        """Chosen by the first `start`; a restart keeps it, as a real server's address stays."""
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"
        self.password = secrets.token_hex(12)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        password_file = self.dir / "password"
        password_file.write_text(self.password + "\n")
        if self.as_user:
            shutil.chown(password_file, "postgres")
        self._run(
            str(self.bindir / "initdb"),
            *("-D", str(self.data), "-U", "postgres", "--pwfile", str(password_file)),
            *("--auth-local", "scram-sha-256", "--auth-host", "scram-sha-256"),
        )
        password_file.unlink()

    def start(self) -> None:
        """Start on a free port the first time (another one if it was taken meanwhile), then on the same port."""
        if self.port:
            self._start_on(self.port)
        else:
            self.port = start_on_free_port(self._start_on)

    def _start_on(self, port: int) -> int:
        log = self.dir / "log"
        seen = log.stat().st_size if log.exists() else 0
        try:
            self._run(
                str(self.bindir / "pg_ctl"),
                *("-D", str(self.data), "-l", str(log), "-w", "start"),
                *("-o", f"-p {port} -k {self.dir} -c listen_addresses=127.0.0.1"),
            )
        except subprocess.CalledProcessError as exc:
            with open(log, "rb") as text:
                text.seek(seen)
                said = text.read().decode(errors="replace")
            if "Address already in use" in said:
                raise PortTakenError(f"PostgreSQL could not bind 127.0.0.1:{port}: {said[-500:]}") from exc
            raise
        return port

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    if url := os.environ.get(ENV_URL):
        yield url
        return
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server.url
    finally:
        server.remove()


def fresh_database(url: str, name: str, owner: str | None = None) -> str:
    """A new empty database on the server of `url`, so tests do not see each other's studies; with `owner`, the
    database is that role's and the URL logs in as it (the operator's own role: see `operator_database`).

    `name` is a readable prefix: a random suffix makes the database the caller's alone, so a name two tests (or two
    sessions on one server) both ask for is never dropped under the other."""
    import sqlalchemy

    name = f"{name[:50]}_{secrets.token_hex(4)}"  # PostgreSQL cuts names at 63 bytes
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else "")))
    engine.dispose()
    database = sqlalchemy.engine.make_url(url).set(database=name)
    if owner is not None:
        database = database.set(username=owner, password=OPERATOR_PASSWORD)
    return str(database.render_as_string(hide_password=False))


def operator_database(url: str, name: str) -> str:
    """A new database owned by the operator's role (created once per server, with a password), and the URL the
    operator logs in with: not the superuser, as in a real deployment."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        query = sqlalchemy.text("SELECT 1 FROM pg_roles WHERE rolname = :role")
        if connection.execute(query, {"role": OPERATOR_ROLE}).first() is None:
            connection.execute(sqlalchemy.text(f"CREATE ROLE {OPERATOR_ROLE}"))
        # Every process has a role of its own (OPERATOR_ROLE): setting its password touches no other session's.
        connection.execute(sqlalchemy.text(f"ALTER ROLE {OPERATOR_ROLE} LOGIN PASSWORD '{OPERATOR_PASSWORD}'"))
    engine.dispose()
    return fresh_database(url, name, owner=OPERATOR_ROLE)
