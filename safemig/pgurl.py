"""Translate sqlx's PostgreSQL URL parameters into libpq's, so one ``DATABASE_URL`` serves both.

sqlx parses the query string itself (``sqlx-postgres/src/options/parse.rs``,
``PgConnectOptions::parse_from_url``) and accepts names libpq refuses with "invalid URI
query parameter". An application's URL therefore often carries ``?ssl-mode=require`` or
``?statement-cache-capacity=100``. This module rewrites such a URL, parameter by
parameter, into one libpq accepts:

* renamed to libpq's name: ``ssl-mode`` -> ``sslmode``, ``ssl-root-cert`` / ``ssl-ca`` ->
  ``sslrootcert``, ``ssl-cert`` -> ``sslcert``, ``ssl-key`` -> ``sslkey`` (and
  ``application-name`` -> ``application_name``, a spelling sqlx itself ignores);
* folded into libpq's ``options``: sqlx's ``options[NAME]=VALUE`` becomes ``-c NAME=VALUE``
  (escaped as sqlx's ``PgOptionsWriteEscaped`` does), and several ``options`` are joined
  with a space, as sqlx joins them;
* dropped, as meaningless to libpq: ``statement-cache-capacity`` (safemig prepares no
  statements);
* passed through: every parameter libpq knows (``sslmode``, ``host``, ``application_name``,
  ``connect_timeout``, ``target_session_attrs``...);
* dropped and reported in :attr:`LibpqUrl.dropped`: a name neither sqlx nor libpq knows.
  sqlx ignores those with a warning, so an application's URL may well carry one; the
  command layer prints the same warning.

An inline PEM certificate (sqlx accepts ``sslrootcert=-----BEGIN CERTIFICATE-----...``) is
refused: libpq reads certificates from files only.

A ``key=value`` conninfo string (not a URL) is returned unchanged: it is libpq's own syntax.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from safemig.errors import ConfigError

RENAMED = {
    "ssl-mode": "sslmode",
    "ssl-root-cert": "sslrootcert",
    "ssl-ca": "sslrootcert",
    "ssl-cert": "sslcert",
    "ssl-key": "sslkey",
    "application-name": "application_name",
}
DROPPED = frozenset({"statement-cache-capacity"})
_CERT_KEYS = frozenset({"sslrootcert", "sslcert", "sslkey"})


@dataclass(frozen=True)
class LibpqUrl:
    """A URL libpq accepts, and the parameters of the original that were dropped unknown."""

    url: str
    dropped: tuple[str, ...] = ()


@cache
def libpq_keywords() -> frozenset[str]:
    """Every connection keyword this libpq knows (asked of libpq itself, not a copied list)."""
    from psycopg import pq

    return frozenset(opt.keyword.decode() for opt in pq.Conninfo.get_defaults())


def _escape_option(text: str) -> str:
    """sqlx's ``PgOptionsWriteEscaped``: backslash before spaces and backslashes (libpq's rule too)."""
    return text.replace("\\", "\\\\").replace(" ", "\\ ")


def translate(url: str) -> LibpqUrl:
    """``url`` with sqlx's parameters translated for libpq (see the module docstring)."""
    try:
        parts = urlsplit(url) if "://" in url else None
    except ValueError:  # malformed (an unclosed [IPv6]): libpq names the problem, connect() reports it
        return LibpqUrl(url)
    if parts is None or parts.scheme not in ("postgres", "postgresql") or not parts.query:
        return LibpqUrl(url)
    known = libpq_keywords()
    kept: list[tuple[str, str]] = []
    options: list[str] = []
    dropped: list[str] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        name = RENAMED.get(key, key)
        if name in DROPPED:
            continue
        if name == "options":
            options.append(value)
        elif name.startswith("options[") and name.endswith("]") and len(name) > len("options[]"):
            options.append(f"-c {_escape_option(name[len('options[') : -1] + '=' + value)}")
        elif name in known:
            if name in _CERT_KEYS and value.lstrip().startswith("-----BEGIN"):
                raise ConfigError(
                    f"database URL parameter {key} holds an inline PEM certificate, which libpq cannot use",
                    hint=f"save the certificate to a file and give its path: ?{name}=/path/to/cert.pem",
                )
            kept.append((name, value))
        else:
            dropped.append(key)
    if options:
        kept.append(("options", " ".join(options)))
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in kept)
    return LibpqUrl(urlunsplit(parts._replace(query=query)), tuple(dropped))


def libpq_url(url: str) -> str:
    """Just the translated URL (for callers that pass it on to libpq or pg_dump)."""
    return translate(url).url
