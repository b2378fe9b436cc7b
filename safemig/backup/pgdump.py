"""Find and run PostgreSQL's client programs (pg_dump, pg_restore) safely.

* The binary must be able to read the server's dump (pg_dump refuses servers newer than
  itself): :func:`pick_binary` checks the major versions first and names the binary to use.
* The password never reaches a command line (``ps`` shows those): the URL is turned into a
  conninfo string without it, and the password goes into the child's ``PGPASSWORD``.
* stderr is drained by a thread, so a chatty pg_dump can never block on a full pipe, and
  its tail is kept for the error message.
"""

from __future__ import annotations

import collections
import glob
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from safemig.errors import ConfigError, ToolError
from safemig.redact import redact

_VERSION = re.compile(r"\(PostgreSQL\)\s+(?P<full>(?P<major>\d+)[0-9.a-z]*)")
_STDERR_TAIL = 64 * 1024


@dataclass(frozen=True)
class Binary:
    """A PostgreSQL client program and its major version."""

    path: str
    major: int
    version: str


def conninfo_without_password(url: str) -> tuple[str, str | None]:
    """Split ``url`` (URL or ``key=value`` conninfo) into a password-free conninfo and the password."""
    if not url:
        return "", None
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(url)
    except ProgrammingError as exc:  # a malformed URL
        from safemig.db import describe, error_text

        raise ConfigError(
            f"invalid database URL {describe(url)}: {error_text(exc)}", hint="use postgresql://USER@HOST:PORT/DBNAME"
        ) from None
    password = params.pop("password", None)
    return make_conninfo("", **{k: str(v) for k, v in params.items()}), (
        str(password) if password is not None else None
    )


def child_env(password: str | None) -> dict[str, str]:
    """The environment for pg_dump/pg_restore: ours, plus ``PGPASSWORD`` when the URL had one."""
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    return env


class _Probe:
    """``PATH --version`` started now, read on :meth:`result` (probes of several binaries overlap)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.error: OSError | None = None
        self._lock = threading.Lock()
        self._found: Binary | ToolError | None = None
        try:
            self.proc: subprocess.Popen[str] | None = subprocess.Popen(
                [path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
        except OSError as exc:
            self.proc, self.error = None, exc

    def result(self) -> Binary:
        with self._lock:
            if self._found is None:
                try:
                    self._found = self._read()
                except ToolError as exc:
                    self._found = exc
        if isinstance(self._found, ToolError):
            raise ToolError(self._found.message, hint=self._found.hint)
        return self._found

    def _read(self) -> Binary:
        if self.proc is None:
            assert self.error is not None
            raise ToolError(f"cannot run {self.path}: {self.error.strerror}", hint="check backup.pg_bin_dir or PATH")
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            out = ""
        match = _VERSION.search(out)
        if not match:
            raise ToolError(
                f"{self.path} --version printed {out.strip()!r}, not a PostgreSQL version",
                hint="point backup.pg_bin_dir at PostgreSQL's bin directory",
            )
        return Binary(path=self.path, major=int(match.group("major")), version=match.group("full"))


# Versions already read in this process, by path and file identity: a deploy picks pg_dump,
# pg_restore and pg_dumpall in gate 3 and pg_restore again in gate 4, ~30 ms of process start each.
_VERSIONS: dict[tuple[str, int, int, int], _Probe] = {}
_VERSIONS_LOCK = threading.Lock()


def _identity(path: str) -> tuple[str, int, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (path, 0, 0, 0)  # the probe reports why it cannot run
    return (path, st.st_ino, st.st_size, st.st_mtime_ns)


def _probe(path: str) -> _Probe:
    key = _identity(path)
    with _VERSIONS_LOCK:
        probe = _VERSIONS.get(key)
        if probe is None or probe.proc is None:  # a program that could not start is tried again
            probe = _VERSIONS[key] = _Probe(path)
    return probe


def _version_of(path: str) -> Binary:
    return _probe(path).result()


def probe_binaries(names: list[str], pg_bin_dir: str | None = None) -> None:
    """Start ``--version`` of each of ``names``' first candidate at once, so that the
    :func:`pick_binary` calls that follow wait for one process start, not one per binary in
    turn (the other candidates are only read if the first is too old)."""
    for name in names:
        try:
            paths = _candidates(name, pg_bin_dir)
        except ConfigError:
            continue  # pick_binary reports it
        if paths:
            _probe(paths[0])


def _candidates(name: str, pg_bin_dir: str | None) -> list[str]:
    if pg_bin_dir:
        path = Path(pg_bin_dir) / name
        if not path.is_file():
            raise ConfigError(
                f"backup.pg_bin_dir {pg_bin_dir} has no {name}",
                hint="point it at the bin directory of a PostgreSQL installation",
            )
        return [str(path)]
    found = []
    on_path = shutil.which(name)
    if on_path:
        found.append(on_path)
    found += sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    found += sorted(glob.glob(f"/usr/pgsql-*/bin/{name}"), reverse=True)  # RHEL/PGDG layout
    return found


def pick_binary(name: str, min_major: int, pg_bin_dir: str | None = None, *, purpose: str) -> Binary:
    """The first ``name`` whose major version is at least ``min_major``; else a clear error.

    The binary on PATH is preferred; installed versions under ``/usr/lib/postgresql`` are the
    fallback, so a Debian machine with several clients does the right thing by itself.
    """
    seen: list[Binary] = []
    for path in _candidates(name, pg_bin_dir):
        binary = _version_of(path)
        if binary.major >= min_major:
            return binary
        seen.append(binary)
    if not seen:
        raise ToolError(
            f"{name} not found on PATH or under /usr/lib/postgresql/*/bin",
            hint=f"install the PostgreSQL {min_major} client (Debian: apt-get install postgresql-client-{min_major})"
            " or set backup.pg_bin_dir",
        )
    have = ", ".join(f"{b.path} is {b.major}" for b in seen)
    raise ToolError(
        f"{name} {min_major} or newer is needed to {purpose} ({have})",
        hint=f"install postgresql-client-{min_major} and set"
        f' backup.pg_bin_dir = "/usr/lib/postgresql/{min_major}/bin" (or its path on this system)',
    )


class ChildProcess:
    """A running pg_dump/pg_restore whose stderr is drained in the background."""

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str],
        stdin: int | SocketStdin | None = None,
        stdout: int | None = None,
    ) -> None:
        """``stdin``: ``subprocess.PIPE`` (-1), a file descriptor, or a :class:`SocketStdin` (then
        :attr:`stdin_socket`; the caller writes into it and closes it)."""
        self.name = Path(args[0]).name
        self.stdin_socket = stdin if isinstance(stdin, SocketStdin) else None
        given = stdin.child_fd if isinstance(stdin, SocketStdin) else stdin
        try:
            self.proc = subprocess.Popen(args, stdin=given, stdout=stdout, stderr=subprocess.PIPE, env=env, bufsize=0)
        except OSError as exc:
            raise ToolError(
                f"cannot start {self.name}: {exc.strerror}", hint="check backup.pg_bin_dir or PATH"
            ) from None
        if self.stdin_socket is not None:
            self.stdin_socket.started()
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_size = 0
        self._drainer = threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True)
        self._drainer.start()

    def _drain(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            self._tail.append(line)
            self._tail_size += len(line)
            while self._tail_size > _STDERR_TAIL and len(self._tail) > 1:
                self._tail_size -= len(self._tail.popleft())
        stream.close()

    @property
    def stdout(self) -> io.FileIO:
        """The raw pipe (``bufsize=0``): reads return what is there, ``readinto`` included."""
        assert self.proc.stdout is not None
        return cast(io.FileIO, self.proc.stdout)

    @property
    def stdin(self) -> io.FileIO:
        """The raw pipe: a ``write`` may be partial, so callers use :func:`write_all`."""
        assert self.proc.stdin is not None
        return cast(io.FileIO, self.proc.stdin)

    def stderr_text(self) -> str:
        """What the program said on stderr (its last 64 KiB), redacted, on one line."""
        self._drainer.join(timeout=5)
        text = b"".join(self._tail).decode("utf-8", "replace")
        return redact(" ".join(line.strip() for line in text.splitlines() if line.strip()))

    def wait(self) -> int:
        return self.proc.wait()

    def kill(self) -> None:
        """Stop the program now (it is being abandoned) and reap it."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:  # pragma: no cover - exited meanwhile
                pass
        self.proc.wait()

    def failure(self, what: str) -> str | None:
        """``None`` if the program exited 0, else why it did not (exit status or signal, and its stderr)."""
        code = self.proc.wait()
        if code == 0:
            return None
        if code < 0:
            try:
                status = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                status = f"was killed by signal {-code}"
        else:
            status = f"exited with status {code}"
        said = self.stderr_text()
        return f"{self.name} {status} while {what}" + (f": {said[-1500:]}" if said else "")


def write_all(stream: IO[bytes], data: bytes | memoryview) -> None:
    """Write every byte of ``data`` into an unbuffered pipe, or raise.

    A raw ``write`` may take only part of its argument (a pipe write interrupted after some
    bytes went through, e.g. when the process is stopped and continued); the rest must be
    written again, or the reader sees a stream with a hole in it.
    """
    view = memoryview(data).cast("B")
    while view:
        written = stream.write(view)
        if written is None:  # pragma: no cover - only non-blocking pipes say "try later"
            continue
        view = view[written:]


def enlarge_pipe(fd: int, size: int = 1024 * 1024) -> None:
    """Best effort: a 1 MiB pipe (Linux) so the producer blocks less often on the reader."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (OSError, ImportError):
        pass


class SocketStdin:
    """A Unix stream socket as a child's stdin, where a pipe would make both sides wake ~50,000
    times per 186 MB.

    Why not a pipe: pg_restore reads its stdin 4 KiB at a time (stdio's buffer for a pipe), and
    a writer blocked on a full pipe is woken each time one 4 KiB page of it is freed, so a
    producer faster than pg_restore (S3 usually is) copies one page per wake-up: 50,000-77,000
    context switches for the md5 bench's 186 MB archive, ~0.27 s of CPU more than the same
    bytes through a socket (measured, bench/README.md). A Unix socket wakes its writer only once
    three quarters of its send buffer drained (1,900 switches with the default buffer). pg_restore reads a socket as it
    reads a pipe (a stream it cannot seek).

    :meth:`write_all` sends every byte or raises (``sendall`` resumes after a partial send, e.g.
    when either process was stopped and continued); ``BrokenPipeError`` or
    ``ConnectionResetError`` once the child stopped reading. Pass it as :class:`ChildProcess`'s
    ``stdin`` (or pass :attr:`child_fd` to a child, then call :meth:`started` to close the
    parent's copy of that end). :meth:`unread` is what a pipe's ``FIONREAD`` tells: whether the
    child has read everything written so far (the stall probe asks).
    """

    def __init__(self) -> None:
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:  # best effort, like enlarge_pipe: 1 MiB in flight (the kernel caps it at net.core.wmem_max)
            self._ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1024 * 1024)
        except OSError:
            pass
        self._flags = getattr(socket, "MSG_NOSIGNAL", 0)  # EPIPE as an error, even where SIGPIPE is not ignored
        self.closed = False

    @property
    def child_fd(self) -> int:
        return self._theirs.fileno()

    def started(self) -> None:
        """The child has its copy: ours goes, so the child's exit is seen as a broken connection."""
        self._theirs.close()

    def write_all(self, data: bytes | memoryview) -> None:
        self._ours.sendall(data, self._flags)

    def unread(self) -> int | None:
        """Bytes written that the child has not read yet (0: it read all; Linux's ``SIOCOUTQ``,
        counted in the kernel's buffer units), or ``None`` once closed or where it cannot be asked."""
        if self.closed:
            return None
        import termios

        request = getattr(termios, "TIOCOUTQ", None)  # Linux's SIOCOUTQ; not on every platform
        return None if request is None else queued_bytes(self._ours.fileno(), request)

    def close(self) -> None:
        """End of input: the child reads EOF. Idempotent; a child already gone is no error."""
        if self.closed:
            return
        self.closed = True
        try:
            self._ours.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._ours.close()
        self._theirs.close()


def queued_bytes(fd: int, request: int) -> int | None:
    """The kernel's count of bytes queued on ``fd`` (``termios.FIONREAD``: unread in a pipe;
    ``TIOCOUTQ``/``SIOCOUTQ``: sent on a socket, not yet read by its peer), or ``None`` where it
    cannot be asked (a closed descriptor)."""
    import fcntl
    import struct

    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, request, b"\0\0\0\0"))[0])
    except (OSError, ValueError):
        return None
