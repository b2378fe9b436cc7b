"""Start and stop private PostgreSQL clusters: for the test suite and the local demo.

A cluster lives in its own data directory, listens on 127.0.0.1 on a free port and on
a Unix socket inside that directory, and has a superuser with a password (host
connections use scram-sha-256, so wrong credentials really fail). PostgreSQL refuses
to run as root, so when safemig runs as root the server runs as the ``postgres`` user
that Debian's packages create (else ``nobody``), and the data directory is given to it.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from safemig.errors import ToolError

DEFAULT_PASSWORD = "local-secret-pw"
SUPERUSER = "postgres"


PG_BIN_ENV = "SAFEMIG_PG_BIN"


def find_pg_bin(name: str) -> str:
    """Path of a PostgreSQL program: in ``$SAFEMIG_PG_BIN``, else on PATH, else the newest
    ``/usr/lib/postgresql/*/bin``.

    ``SAFEMIG_PG_BIN`` names one installation's bin directory (e.g. one that ``scripts/pg-majors``
    installed), so the demo and the test suite run a chosen major without touching PATH. When it
    is set, the program must be there: silently falling back to another major would test the
    wrong server.
    """
    pinned = os.environ.get(PG_BIN_ENV)
    if pinned:
        path = Path(pinned) / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolError(
                f"{PG_BIN_ENV}={pinned} has no {name}",
                hint="point it at the bin directory of a PostgreSQL installation (scripts/pg-majors prints them)",
            )
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    raise ToolError(
        f"{name} not found on PATH or under /usr/lib/postgresql/*/bin",
        hint="install PostgreSQL (Debian: apt-get install postgresql) or put its bin directory on PATH"
        f" or in {PG_BIN_ENV}",
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as when we are root (``None`` when not root)."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("SAFEMIG_PG_USER"), "postgres", "nobody"):
        if not name:
            continue
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ToolError(
        "running as root and no unprivileged user to run PostgreSQL as",
        hint="create a 'postgres' user or set SAFEMIG_PG_USER",
    )


@dataclass
class LocalCluster:
    """One private PostgreSQL server. ``start()`` initialises the data directory if needed."""

    datadir: Path
    port: int = 0
    password: str = DEFAULT_PASSWORD
    server_options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.datadir = Path(self.datadir).absolute()
        self._user = _server_user()

    # -- process helpers -------------------------------------------------------------
    def _run(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if self._user is not None:
            kwargs.setdefault("user", self._user.pw_uid)
            kwargs.setdefault("group", self._user.pw_gid)
            kwargs.setdefault("extra_groups", [])
        env = dict(os.environ)
        env.pop("PGDATA", None)
        try:
            return subprocess.run(args, env=env, capture_output=True, text=True, check=True, **kwargs)
        except subprocess.CalledProcessError as exc:
            raise ToolError(
                f"{Path(args[0]).name} failed (exit {exc.returncode}): {(exc.stderr or exc.stdout).strip()[-800:]}",
                hint=f"see {self.datadir / 'server.log'}",
            ) from None

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    @property
    def socket_dir(self) -> Path:
        return self.datadir

    @property
    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").is_file()

    def _make_traversable(self) -> None:
        """Let the server user reach the data directory through its parents (root's tmp dirs are 0700)."""
        if self._user is None:
            return
        for parent in reversed(self.datadir.parents):
            try:
                mode = parent.stat().st_mode
            except OSError:
                continue
            if not mode & 0o001:
                os.chmod(parent, mode | 0o011)

    def init(self) -> None:
        """``initdb`` with a password for the superuser: scram on TCP, trust on the private socket."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._make_traversable()
        os.chmod(self.datadir, 0o700)
        self._chown(self.datadir)
        with tempfile.NamedTemporaryFile("w", delete=False, prefix="safemig-pw-") as fh:
            fh.write(self.password + "\n")
            pwfile = fh.name
        try:
            if self._user is not None:
                os.chown(pwfile, self._user.pw_uid, self._user.pw_gid)
            self._run(
                [
                    find_pg_bin("initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        finally:
            os.unlink(pwfile)

    def start(self) -> LocalCluster:
        """Start the server (initialising first when the directory is new) and wait until it accepts."""
        if not self.initialised:
            self.init()
        self._make_traversable()  # e.g. pytest re-chmods its base temp dir 0700 each session
        if self.running():
            self.port = self._read_port()
            return self
        self._check_major()
        if not self.port:
            self.port = free_port()
        options = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "100",
            **self.server_options,
        }
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        self._run(
            [
                find_pg_bin("pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.datadir),
                "-l",
                str(self.datadir / "server.log"),
                "-o",
                opts,
            ]
        )
        (self.datadir / "safemig.port").write_text(str(self.port))
        self.wait_ready()
        return self

    def _check_major(self) -> None:
        """Refuse, with the fix, a data directory of another major than the server binary (e.g. a
        demo state directory kept across a change of ``SAFEMIG_PG_BIN``); pg_ctl's own message only
        points at the server log."""
        made_by = (self.datadir / "PG_VERSION").read_text().strip()
        postgres = find_pg_bin("postgres")
        out = subprocess.run([postgres, "--version"], capture_output=True, text=True).stdout
        match = re.search(r"\(PostgreSQL\) (\d+)", out)
        if match and match.group(1) != made_by:
            raise ToolError(
                f"{self.datadir} was made by PostgreSQL {made_by}, but {postgres} is PostgreSQL {match.group(1)}",
                hint=f"delete that directory, or run PostgreSQL {made_by}'s binaries ({PG_BIN_ENV}=its bin directory)",
            )

    def _read_port(self) -> int:
        try:
            return int((self.datadir / "safemig.port").read_text())
        except (OSError, ValueError):
            return self.port

    def running(self) -> bool:
        if not self.initialised:
            return False
        result = subprocess.run(
            [find_pg_bin("pg_ctl"), "status", "-D", str(self.datadir)],
            capture_output=True,
            text=True,
            user=self._user.pw_uid if self._user is not None else None,
        )
        return result.returncode == 0

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise ToolError(
            f"local PostgreSQL on port {self.port} did not come up", hint=f"see {self.datadir / 'server.log'}"
        )

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._run([find_pg_bin("pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.datadir)])

    def destroy(self) -> None:
        """Stop the server and delete its data directory."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)

    # -- connection helpers ----------------------------------------------------------
    def url(self, dbname: str = "postgres", user: str = SUPERUSER, password: str | None = None) -> str:
        """A ``postgresql://`` URL over TCP with the password in it."""
        pw = self.password if password is None else password
        return f"postgresql://{quote(user)}:{quote(pw, safe='')}@127.0.0.1:{self.port}/{quote(dbname)}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL through psql over the private socket (no password needed) and return its output."""
        result = subprocess.run(
            [
                find_pg_bin("psql"),
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                dbname,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise ToolError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
