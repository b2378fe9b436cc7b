"""Durations are read exactly as PostgreSQL reads them: checked against a real server's set_config."""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safemig.durations import INT_MAX, DurationError, parse_duration, parse_guc_time

# Inputs where a hand-written parser would most likely differ from guc.c's.
TRICKY = [
    "5s", "500ms", "15min", "1h", "1d", "0", "250", "5000", " 5 s ", "5\ts", "\t5s\n", "+5s", "-1", "-0",
    "1.5", "1.5s", "1.5d", "0.4ms", "0.5ms", "1.5ms", "2.5ms", "0.0000001d", "1e3", "1E3ms", "1e", "1e+2s", "1.e2",
    ".5s", " .5s", "-.5", "+.5", "5.", "5.s", "0x10", "0X1fs", "0x", "0xs", "0x1.8p1s", "010", "08", "0.8", "00",
    "30d", "24d", "25d", "2147483647", "2147483648", "2147483647ms", "2147483.647s", "9223372036854775808",
    "99999999999999999999", "1e400", "1e-400", "inf", "-inf", "nan", "infinity", "5S", "5MS", "5 sec", "5mins",
    "5 m s", "5s x", "s", "", " ", "five", "5_000", "٥s", "5µs", "5us", "1000us", "1499us", "1500us", "2500us",
]


def _server_ms(conn: psycopg.Connection, guc: str, text: str) -> float | None:
    """What the server sets ``guc`` to for ``text`` (in its base unit), or None if it refuses it."""
    try:
        with conn.transaction():
            conn.execute("SELECT set_config(%s, %s, true)", (guc, text))
            (value,) = conn.execute("SELECT setting FROM pg_settings WHERE name = %s", (guc,)).fetchone()
            raise _Rollback(float(value))
    except _Rollback as done:
        return done.value
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.InvalidTextRepresentation):
        return None


class _Rollback(Exception):
    def __init__(self, value: float) -> None:
        self.value = value


def _ours(text: str, *, integer: bool, maximum: float) -> float | None:
    try:
        return parse_duration(text, base="ms", integer=integer, minimum=0, maximum=maximum).ms
    except DurationError:
        return None


@pytest.fixture(scope="module")
def server(pg_cluster):
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as conn:
        yield conn


@pytest.mark.parametrize("text", TRICKY)
def test_lock_timeout_accepted_exactly_when_postgresql_accepts_it(server, text):
    assert _ours(text, integer=True, maximum=INT_MAX) == _server_ms(server, "lock_timeout", text)


@pytest.mark.parametrize("text", TRICKY)
def test_real_valued_durations_follow_postgresql_too(server, text):
    # vacuum_cost_delay is a real-valued ms setting (0 .. 100): the strtod path and its unit rounding
    ours = _ours(text, integer=False, maximum=100)
    theirs = _server_ms(server, "vacuum_cost_delay", text)
    assert (ours is None) == (theirs is None)
    if ours is not None:
        assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-9)


_pieces = st.tuples(
    st.sampled_from(["", " ", "\t"]),
    st.sampled_from(["", "+", "-"]),
    st.one_of(
        st.integers(0, 3_000_000_000).map(str),
        st.decimals(0, 100_000, places=3, allow_nan=False, allow_infinity=False).map(str),
        st.sampled_from(["0x1f", "0X10", "017", "09", ".5", "5.", "1e3", "2E-1", "0x", "1e", ""]),
    ),
    st.sampled_from(["", " ", "  "]),
    st.sampled_from(["", "us", "ms", "s", "min", "h", "d", "S", "m", "sec", "x", "mins"]),
    st.sampled_from(["", " ", "\n"]),
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_pieces)
def test_generated_durations_agree_with_the_server(server, text):
    assert _ours(text, integer=True, maximum=INT_MAX) == _server_ms(server, "statement_timeout", text)


def test_values_in_base_units():
    assert parse_guc_time("1.5d") == 36 * 3_600_000  # a fraction rounds to whole hours first
    assert parse_guc_time("0x10") == 16 and parse_guc_time("010") == 8  # strtol(..., 0)
    assert parse_guc_time("0.4ms") == 0  # rounds to 0: lock_timeout disabled, as on the server
    assert parse_guc_time("2", base="s", integer=False) == 2.0
    assert parse_duration("0.2s", base="s", integer=False, maximum=3600).seconds == pytest.approx(0.2)
    with pytest.raises(DurationError, match="outside the valid range"):
        parse_duration("2h", base="s", integer=False, maximum=3600)
    with pytest.raises(DurationError, match="exceeds integer range"):
        parse_guc_time("30d")
