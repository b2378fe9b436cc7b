"""A local S3 stand-in (moto's HTTP server) for the demo and the tests.

moto's ``ThreadedMotoServer`` serves the S3 API on 127.0.0.1 from a thread of the
calling process; subprocesses (the CLI under test, ``pg_dump`` pipelines) reach it
through ``AWS_ENDPOINT_URL``. Imported only by the demo and the tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from safemig.errors import UsageError
from safemig.local.postgres import free_port

# Fake credentials, only ever sent to the local stand-in.
LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-local-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-local-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class LocalS3:
    """A running moto server; ``env`` holds the variables a subprocess needs to use it."""

    port: int
    _server: object

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**LOCAL_AWS_ENV, "AWS_ENDPOINT_URL": self.endpoint_url}

    def stop(self) -> None:
        self._server.stop()  # type: ignore[attr-defined]


def require_server() -> None:
    """Refuse (exit 2, with the install command) when moto's server is not installed (no demo extra)."""
    try:
        import moto.server  # noqa: F401 - moto[server] pulls in flask and werkzeug too
    except ImportError as exc:
        raise UsageError(
            f"the local S3 stand-in needs moto's server, which is not installed ({exc})",
            hint="pip install 'safemig[demo]'",
        ) from None


def start_local_s3(port: int = 0) -> LocalS3:
    """Start moto's S3 server on 127.0.0.1 (a free port unless one is given)."""
    require_server()
    from moto.server import ThreadedMotoServer

    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return LocalS3(port=port, _server=server)


def apply_env(s3: LocalS3) -> dict[str, str | None]:
    """Point this process's boto3 at ``s3``; returns the previous values for restoring."""
    previous = {k: os.environ.get(k) for k in s3.env}
    os.environ.update(s3.env)
    return previous
