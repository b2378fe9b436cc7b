"""Keep secrets out of everything safemig prints or logs.

Every place that shows a database URL, an error message from libpq/psycopg/boto3 or
the stderr of pg_dump passes it through :func:`redact` first: passwords in URLs and
in ``password=...`` conninfo pairs, and AWS access keys / secret keys, are masked.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "****"

# scheme://user:password@host  (password may contain anything but '@' and '/')
_URL_PASSWORD = re.compile(r"(?P<prefix>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s/]*)(?P<at>@)")
# key=value conninfo pairs: password=secret or password='se cret'
_CONNINFO_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# ?password=... query parameters
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)(?P<pw>[^&\s]+)", re.IGNORECASE)
# AWS access key ids and anything that looks like a 40-char secret access key after a label
_AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b")
_AWS_SECRET = re.compile(
    r"(?P<key>(aws_secret_access_key|secret_access_key|SecretAccessKey|aws_session_token)\s*[=:]\s*[\"']?)(?P<pw>[^\s\"']+)",
    re.IGNORECASE,
)

_SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PGPASSWORD", "AWS_ACCESS_KEY_ID")
# The password of a URL too malformed to parse (an unescaped '/', '@' or space, a bad %-escape):
# everything between "user:" and the last '@'. libpq and psycopg quote such tokens in their errors.
_RAW_URL_PASSWORD = re.compile(r"^\s*[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:(?P<pw>.+)@")
_MALFORMED = re.compile(r"[\s/@?#]|%(?![0-9A-Fa-f]{2})")
_seen_passwords: set[str] = set()


def _remember_password(url: str) -> None:
    """Mask from now on the raw password of a malformed URL (a well-formed one is masked by pattern)."""
    match = _RAW_URL_PASSWORD.match(url)
    if not match or not _MALFORMED.search(match["pw"]):
        return
    for secret in [match["pw"], *match["pw"].split("@")]:  # libpq may take what follows an '@' for the host
        if len(secret) >= 4:
            _seen_passwords.add(secret)


def mask_url(url: str | None) -> str:
    """Return ``url`` with its password replaced by ``****`` (the URL stays usable to read)."""
    if not url:
        return ""
    _remember_password(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # libpq's multi-host form (postgresql://u:pw@h1:5432,h2:5432/db) has no single port
        return redact(url)
    if parts.password is None:
        return redact(url)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal: keep its brackets
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    netloc = f"{user}:{MASK}@{host}"
    return redact(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))


_AWS_SECRET_ANCHORS = ("aws_secret_access_key", "secret_access_key", "secretaccesskey", "aws_session_token")


def _sub_at(pattern: re.Pattern, repl, text: str, anchors: tuple[str, ...], lowered: str | None = None) -> str:
    """``pattern.sub(repl, text)``, tried only where one of ``anchors`` (lower case) starts: every match of
    these patterns starts with its anchor, and a case-insensitive pattern tried at every position of a
    large report (a lint run's 8 MB of JSON) cost ~0.9 s. Non-ASCII text (where lower-casing may move
    offsets) takes the plain ``sub``. ``lowered``: ``text.lower()`` if the caller has it (lowering an
    8 MB report once per pattern was a quarter of the redaction); ``text`` itself comes back when
    nothing matched, so the caller knows it may pass the same ``lowered`` on."""
    if not text.isascii():
        return pattern.sub(repl, text)
    if lowered is None:
        lowered = text.lower()
    starts: list[int] = []
    for anchor in anchors:
        index = lowered.find(anchor)
        while index >= 0:
            starts.append(index)
            index = lowered.find(anchor, index + 1)
    parts, last = [], 0
    for start in sorted(starts):
        if start < last:
            continue
        match = pattern.match(text, start)
        if match:
            parts += [text[last : match.start()], repl(match)]
            last = match.end()
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


def redact(text: str | None) -> str:
    """Mask every secret safemig knows how to recognise in free text."""
    if not text:
        return text or ""
    # Each pattern runs only when its literal anchor occurs: on a large report (a lint run
    # over thousands of files) the URL pattern alone tried a match at every word boundary.
    out = text
    lowered = text.casefold()  # as permissive as re.IGNORECASE ("paſſword" folds to "password")
    if "://" in text:
        out = _URL_PASSWORD.sub(lambda m: f"{m.group('prefix')}{MASK}{m.group('at')}", out)
    ascii_lowered = lowered if text.isascii() else None  # casefold() is lower() on ASCII text

    def lowered_out() -> str | None:  # ``out`` lowered, when still known (nothing was masked yet)
        return ascii_lowered if out is text else None

    if "password" in lowered:
        out = _sub_at(_CONNINFO_PASSWORD, lambda m: f"{m.group('key')}{MASK}", out, ("password",), lowered_out())
        out = _sub_at(
            _QUERY_PASSWORD, lambda m: f"{m.group('key')}{MASK}", out, ("?password=", "&password="), lowered_out()
        )
    if "AKIA" in text or "ASIA" in text:
        out = _AWS_KEY_ID.sub(MASK, out)
    if "secret" in lowered or "session_token" in lowered:
        out = _sub_at(_AWS_SECRET, lambda m: f"{m.group('key')}{MASK}", out, _AWS_SECRET_ANCHORS, lowered_out())
    for password in sorted(_seen_passwords, key=len, reverse=True):
        out = out.replace(password, MASK)
    for name in _SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            out = out.replace(value, MASK)
    return out


def redact_data(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with every string redacted.

    Machine-readable output is redacted this way, before it is serialised: redacting the
    JSON text instead can swallow the quote after a masked ``password=...`` and break it.
    """
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v) for v in value]
    return value
