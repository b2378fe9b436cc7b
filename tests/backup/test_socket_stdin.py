"""pgdump.SocketStdin: a child's stdin through a Unix socket gets every byte, in order, across
pauses of the child; a child that stops reading is an error on the writer's side, not a hang."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from safemig.backup.pgdump import SocketStdin

_DIGEST_OF_STDIN = "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"


def _child(stdin: SocketStdin, code: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", code], stdin=stdin.child_fd, stdout=subprocess.PIPE, text=True)
    stdin.started()
    return child


def test_every_byte_arrives_in_order_across_pauses_of_the_reader():
    data = os.urandom(24 * 1024 * 1024)
    stdin = SocketStdin()
    child = _child(stdin, _DIGEST_OF_STDIN)
    stop = threading.Event()

    def pause_repeatedly() -> None:  # Ctrl-Z / fg, a debugger: the writer blocks, then resumes mid-send
        while not stop.is_set():
            child.send_signal(signal.SIGSTOP)
            time.sleep(0.02)
            child.send_signal(signal.SIGCONT)
            time.sleep(0.02)

    pauser = threading.Thread(target=pause_repeatedly, daemon=True)
    pauser.start()
    try:
        view = memoryview(data)
        for start in range(0, len(data), 1024 * 1024):
            stdin.write_all(view[start : start + 1024 * 1024])
    finally:
        stop.set()
        pauser.join()
        child.send_signal(signal.SIGCONT)
    stdin.close()
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    assert out.strip() == hashlib.sha256(data).hexdigest()


def test_a_reader_that_exits_makes_the_writer_fail_instead_of_hanging():
    stdin = SocketStdin()
    child = _child(stdin, "pass")  # gone without reading a byte (pg_restore failing at its start)
    child.wait(timeout=30)
    with pytest.raises(ConnectionError):
        for _ in range(64):  # more than any socket buffer holds
            stdin.write_all(b"x" * 1024 * 1024)
    stdin.close()
    stdin.close()  # idempotent


def test_unread_tells_whether_the_child_read_everything_as_the_stall_probe_asks():
    """What a pipe's FIONREAD told the stall probe (fetch._waits_for_input): bytes still unread."""
    from safemig.backup.fetch import _waits_for_input
    from safemig.backup.pgdump import ChildProcess

    stdin = SocketStdin()
    go = "import sys, time; time.sleep(float(sys.argv[1])); sys.stdin.buffer.read(); print('done')"
    child = ChildProcess([sys.executable, "-c", go, "1.5"], env=dict(os.environ), stdin=stdin, stdout=-1)
    try:
        stdin.write_all(b"y" * 65536)
        assert (stdin.unread() or 0) > 0 and not _waits_for_input(child)  # written, not yet read
        deadline = time.monotonic() + 30
        while stdin.unread() != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stdin.unread() == 0 and _waits_for_input(child)  # it read everything and waits for more
        stdin.close()
        assert stdin.unread() is None and not _waits_for_input(child)  # end of input: it works on its own
        assert child.proc.wait(timeout=30) == 0
    finally:
        stdin.close()
        child.kill()
