"""A stock sqlx repository works with zero flags (issue 11): each numbered item against real PostgreSQL.

sqlx-cli is not installed here; its behaviour is taken from its source (launchbadge/sqlx:
sqlx-cli/src/migrate.rs, opt.rs, lib.rs; sqlx-core/src/migrate/; sqlx-postgres/src/options/parse.rs)
and cited in the modules under test.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import zlib
from pathlib import Path

import psycopg
import pytest

from .conftest import scalar

TIMESTAMPED = {
    "20240101120000_create_users.sql": b"CREATE TABLE users (id bigint PRIMARY KEY, name text);\n",
    "20240102093000_add_email.sql": b"ALTER TABLE users ADD COLUMN email text;\r\n",
    "20240205170000_create_orders.sql": b"CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint);\n",
}


@pytest.fixture(autouse=True)
def _restore_environ():
    """.env loading writes os.environ, as sqlx's dotenvy does; undo it after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


class Repo:
    """A stock sqlx repository: ``migrations/``, maybe ``.env`` and ``sqlx.toml``, no safemig.toml."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.migrations = root / "migrations"
        self.migrations.mkdir(parents=True)

    def write(self, name: str, sql: str | bytes, directory: Path | None = None) -> Path:
        path = (directory or self.migrations) / name
        path.write_bytes(sql if isinstance(sql, bytes) else sql.encode("utf-8"))
        return path

    def dotenv(self, text: str) -> None:
        (self.root / ".env").write_text(text, encoding="utf-8")

    def sqlx_toml(self, text: str) -> None:
        (self.root / "sqlx.toml").write_text(text, encoding="utf-8")


@pytest.fixture
def repo(tmp_path) -> Repo:
    return Repo(tmp_path / "app")


@pytest.fixture
def stock(repo) -> Repo:
    for name, raw in TIMESTAMPED.items():
        repo.write(name, raw)
    return repo


def migrate(cli, repo: Repo, *args: str):
    return cli("migrate", *args, cwd=repo.root)


def with_params(url: str, params: str) -> str:
    return url + ("&" if "?" in url else "?") + params


# -- the stock repository, no flags ------------------------------------------------------


@pytest.mark.slow
def test_stock_sqlx_repo_runs_and_lists_with_no_flags(cli_process, stock, database_url):
    app_url = with_params(database_url, "ssl-mode=disable&statement-cache-capacity=100")
    stock.dotenv(f"# as sqlx's README writes it\nDATABASE_URL={app_url}\n")
    result = cli_process("migrate", "run", cwd=stock.root)
    assert result.exit_code == 0, result.output
    assert "3 migration(s) applied; the database is at version 20240205170000." in result.stdout
    info = cli_process("migrate", "info", "--json", cwd=stock.root)
    assert info.exit_code == 0, info.output
    rows = json.loads(info.stdout)
    assert [(r["version"], r["state"], r["file"]) for r in rows] == [
        (int(name.split("_")[0]), "applied", f"migrations/{name}") for name in TIMESTAMPED
    ]
    with psycopg.connect(database_url) as conn:
        stored = {v: bytes(c) for v, c in conn.execute("SELECT version, checksum FROM _sqlx_migrations")}
    assert stored == {int(n.split("_")[0]): hashlib.sha384(raw).digest() for n, raw in TIMESTAMPED.items()}
    text = cli_process("migrate", "info", cwd=stock.root)
    assert "20240102093000  applied" in text.stdout and "local-secret-pw" not in text.output


# -- 1. --ignore-missing -----------------------------------------------------------------


def test_1_ignore_missing_on_run_info_and_revert(cli, stock, database_url):
    url = ("--database-url", database_url)
    assert migrate(cli, stock, "run", *url).exit_code == 0
    (stock.migrations / "20240101120000_create_users.sql").unlink()  # squashed away
    stock.write("20240301000000_create_items.sql", "CREATE TABLE items (id int);\n")
    stock.write("20240301000000_create_items.down.sql", "DROP TABLE items;\n")
    refused = migrate(cli, stock, "run", *url)
    assert refused.exit_code == 1 and "is applied but no file for it exists" in refused.stderr
    result = migrate(cli, stock, "run", "--ignore-missing", *url)
    assert result.exit_code == 0, result.output
    assert "Applied 20240301000000/create items" in result.stdout
    info = json.loads(migrate(cli, stock, "info", "--ignore-missing", "--json", *url).stdout)
    assert info[0]["version"] == 20240101120000 and info[0]["state"] == "missing"  # still listed
    assert migrate(cli, stock, "revert", *url).exit_code == 1
    reverted = migrate(cli, stock, "revert", "--ignore-missing", *url)
    assert reverted.exit_code == 0 and "Reverted 20240301000000/create items" in reverted.stdout


# -- 2. sqlx's URL parameters ------------------------------------------------------------


def test_2_translate_sqlx_parameters():
    from safemig.pgurl import translate

    out = translate(
        "postgres://u:p%40ss@db:5432/app?ssl-mode=require&statement-cache-capacity=100&ssl-root-cert=/ca.pem"
        "&ssl-cert=/c.pem&ssl-key=/k.pem&application_name=web&options[search_path]=app,public"
        "&options[statement_timeout]=5s&connect_timeout=3&nonsense=1"
    )
    assert out.url == (
        "postgres://u:p%40ss@db:5432/app?sslmode=require&sslrootcert=%2Fca.pem&sslcert=%2Fc.pem&sslkey=%2Fk.pem"
        "&application_name=web&connect_timeout=3&options=-c%20search_path%3Dapp%2Cpublic%20-c%20statement_timeout%3D5s"
    )
    assert out.dropped == ("nonsense",)
    assert translate("host=db dbname=app").url == "host=db dbname=app"  # libpq's own syntax: untouched
    assert translate("postgres://db/app").url == "postgres://db/app"
    assert (
        translate("postgres://db/app?ssl-ca=/x&sslmode=disable").url
        == "postgres://db/app?sslrootcert=%2Fx&sslmode=disable"
    )


def test_2_inline_pem_is_refused_with_a_hint():
    from safemig.errors import ConfigError
    from safemig.pgurl import translate

    with pytest.raises(ConfigError, match="inline PEM certificate") as info:
        translate("postgres://db/app?sslrootcert=-----BEGIN%20CERTIFICATE-----abc")
    assert info.value.exit_code == 2


def test_2_a_url_shared_with_the_application_connects(cli, stock, database_url):
    app_url = with_params(
        database_url,
        "ssl-mode=disable&statement-cache-capacity=100&options[statement_timeout]=4321&application-name=orders-api&x-unknown=1",
    )
    result = migrate(cli, stock, "run", "--database-url", app_url)
    assert result.exit_code == 0, result.output
    assert "database URL parameter 'x-unknown' is unknown to sqlx and libpq; ignored" in result.stderr
    from safemig.db import connect

    with connect(app_url) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "4321ms"
        assert conn.execute("SHOW application_name").fetchone()[0] == "orders-api"


# -- 3. .env and the default directory ---------------------------------------------------


def test_3_dotenv_from_a_parent_directory_and_real_variables_win(cli, stock, database_url, tmp_path):
    (tmp_path / ".env").write_text(f'DATABASE_URL="{database_url}"\n', encoding="utf-8")  # the repo's parent
    assert migrate(cli, stock, "run").exit_code == 0
    assert scalar(database_url, "SELECT count(*) FROM _sqlx_migrations") == 3
    os.environ["DATABASE_URL"] = with_params(database_url.rsplit("/", 1)[0] + "/no_such_db", "sslmode=disable")
    result = migrate(cli, stock, "info")
    assert result.exit_code == 3 and "no_such_db" in result.stderr  # the exported variable won over .env
    del os.environ["DATABASE_URL"]
    no_dotenv = cli("--no-dotenv", "migrate", "info", cwd=stock.root)
    assert no_dotenv.exit_code == 2 and "no database given" in no_dotenv.stderr


def test_3_default_directory_rule(tmp_path):
    from safemig.config import load_config

    root = tmp_path / "r"
    root.mkdir()
    assert load_config(cwd=root).migrations_dir == (root / "migrations").resolve()  # neither: sqlx's default
    (root / "docker" / "migrations").mkdir(parents=True)
    assert load_config(cwd=root).migrations_dir == (root / "docker" / "migrations").resolve()  # the guide's
    (root / "migrations").mkdir()
    assert load_config(cwd=root).migrations_dir == (root / "migrations").resolve()  # sqlx's wins when both exist
    (root / "sqlx.toml").write_text('[migrate]\nmigrations-dir = "db/migrations"\n')
    assert load_config(cwd=root).migrations_dir == (root / "db" / "migrations").resolve()
    (root / "safemig.toml").write_text('migrations_dir = "docker/migrations"\n')
    assert load_config(cwd=root).migrations_dir == (root / "docker" / "migrations").resolve()


def test_3_this_repository_keeps_docker_migrations():
    from safemig.config import load_config

    repo_root = Path(__file__).resolve().parents[2]
    assert load_config(cwd=repo_root).migrations_dir == repo_root / "docker" / "migrations"


# -- 4. sqlx.toml ------------------------------------------------------------------------


def test_4_sqlx_toml_table_schemas_ignored_chars_and_dir(cli, repo, database_url):
    repo.sqlx_toml(
        '[common]\ndatabase-url-var = "ORDERS_DATABASE_URL"\n\n'
        '[migrate]\nmigrations-dir = "db/migrations"\ntable-name = "ops._sqlx_migrations"\n'
        'create-schemas = ["ops"]\nignored-chars = ["\\r", "\\uFEFF"]\n'
    )
    directory = repo.root / "db" / "migrations"
    directory.mkdir(parents=True)
    raw = b"CREATE TABLE t (a int);\r\nCREATE TABLE u (a int);\r\n"
    repo.write("1_init.sql", raw, directory)
    os.environ["ORDERS_DATABASE_URL"] = database_url
    result = migrate(cli, repo, "run")
    assert result.exit_code == 0, result.output
    checksum = scalar(database_url, "SELECT checksum FROM ops._sqlx_migrations WHERE version = 1")
    # sqlx's checksum_fragments: the SHA-384 of the text without the ignored characters
    assert bytes(checksum) == hashlib.sha384(raw.decode().replace("\r", "").replace("\ufeff", "").encode()).digest()
    assert scalar(database_url, "SELECT to_regclass('public._sqlx_migrations')") is None
    # CRLF -> LF (a Windows checkout) is not a modification under ignored-chars = ["\r"]
    repo.write("1_init.sql", raw.replace(b"\r\n", b"\n"), directory)
    info = json.loads(migrate(cli, repo, "info", "--json").stdout)
    assert [r["state"] for r in info] == ["applied"]


def test_4_sqlx_toml_refuses_unknown_keys_and_bad_values(cli, repo):
    repo.sqlx_toml("[migrate]\nmigration-dir = 'x'\n")
    result = migrate(cli, repo, "info", "--database-url", "postgresql://localhost/x")
    assert result.exit_code == 2 and "unknown key migrate.migration-dir" in result.stderr
    repo.sqlx_toml("[migrate]\ntable-name = 'a.b.c'\n")
    assert "is not a table name" in migrate(cli, repo, "add", "x").stderr
    repo.sqlx_toml("[migrate.defaults]\nmigration-type = 'both'\n")
    assert "is not one of inferred, simple, reversible" in migrate(cli, repo, "add", "x").stderr


def test_4_sqlx_toml_defaults_for_new_migrations(cli, repo):
    repo.sqlx_toml('[migrate.defaults]\nmigration-type = "reversible"\nmigration-versioning = "sequential"\n')
    result = migrate(cli, repo, "add", "create users")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in repo.migrations.iterdir()) == [
        "0001_create_users.down.sql",
        "0001_create_users.up.sql",
    ]


# -- 5. one ledger table -----------------------------------------------------------------


def test_5_reads_and_writes_the_table_search_path_finds(cli, stock, database_url):
    assert (
        migrate(cli, stock, "run", "--target-version", "20240102093000", "--database-url", database_url).exit_code == 0
    )
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute("CREATE SCHEMA app")
    first_app = with_params(database_url, "options=-c%20search_path%3Dapp,public")
    result = migrate(cli, stock, "run", "--database-url", first_app)
    assert result.exit_code == 0, result.output
    assert "Applied 20240205170000/create orders" in result.stdout and "Applied 20240101120000" not in result.stdout
    assert scalar(database_url, "SELECT to_regclass('app._sqlx_migrations')") is None  # sqlx would create this
    assert scalar(database_url, "SELECT count(*) FROM public._sqlx_migrations") == 3
    info = json.loads(migrate(cli, stock, "info", "--json", "--database-url", first_app).stdout)
    assert [r["state"] for r in info] == ["applied"] * 3


def test_5_a_new_ledger_goes_where_create_table_puts_it(conn):
    from safemig.migrations import ledger

    conn.execute("CREATE SCHEMA app; SET search_path = app, public")
    found = ledger.resolve(conn)
    assert str(found) == "app._sqlx_migrations"
    ledger.ensure_table(conn, found)
    conn.execute("SET search_path = public, app")
    assert str(ledger.resolve(conn)) == "app._sqlx_migrations"  # the existing one, wherever it is


# -- 6. options before the subcommand ----------------------------------------------------


def test_6_options_before_the_subcommand(cli, repo, database_url):
    other = repo.root / "sql"
    other.mkdir()
    repo.write("1_a.sql", "CREATE TABLE a (x int);", other)
    result = cli("migrate", "--source", "sql", "--database-url", database_url, "run", cwd=repo.root)
    assert result.exit_code == 0 and "Applied 1/a" in result.stdout
    info = cli("migrate", "--source", "sql", "-D", database_url, "info", "--json", cwd=repo.root)
    assert json.loads(info.stdout)[0]["file"] == "sql/1_a.sql"
    # the subcommand's own option wins
    empty = cli("migrate", "--source", "sql", "info", "--source", "migrations", "-D", database_url, cwd=repo.root)
    assert (
        json.loads(cli("migrate", "info", "--json", "-D", database_url, cwd=repo.root).stdout)[0]["state"] == "missing"
    )
    assert "missing" in empty.stdout


# -- 7. migrate add ----------------------------------------------------------------------


def test_7_add_reversible_sequential_timestamp(cli, repo):
    assert migrate(cli, repo, "add", "-r", "create users").exit_code == 0
    (up,) = [p.name for p in repo.migrations.glob("*.up.sql")]
    assert len(up.split("_")[0]) == 14  # empty directory: a timestamp, as sqlx
    assert (repo.migrations / up.replace(".up.sql", ".down.sql")).is_file()
    assert migrate(cli, repo, "add", "add email").exit_code == 0  # inferred: the newest is reversible
    assert len(list(repo.migrations.glob("*.down.sql"))) == 2
    assert migrate(cli, repo, "add", "--simple", "seed").exit_code == 0
    assert len(list(repo.migrations.glob("*_seed.sql"))) == 1
    assert not (repo.root / "rollbacks").exists()  # a stock sqlx repo gets no rollbacks/ directory

    other = Repo(repo.root.parent / "seq")
    other.write("0001_a.sql", "SELECT 1;")
    other.write("0002_b.sql", "SELECT 1;")
    assert migrate(cli, other, "add", "c").exit_code == 0
    assert (other.migrations / "0003_c.sql").is_file()  # follows the existing scheme
    assert migrate(cli, other, "add", "-t", "d").exit_code == 0
    assert len([p for p in other.migrations.iterdir() if p.name.endswith("_d.sql") and len(p.name) == 20]) == 1
    assert migrate(cli, other, "add", "-s", "e").exit_code == 0  # after a timestamp: newest + 1
    assert any(p.name.endswith("_e.sql") and len(p.name.split("_")[0]) == 14 for p in other.migrations.iterdir())
    assert migrate(cli, other, "add", "-t", "-s", "f").exit_code == 2


# -- 8. connect timeout and retries ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _forward_later(listen_port: int, target_port: int, delay: float, stop: threading.Event) -> threading.Thread:
    """After ``delay`` s, accept on ``listen_port`` and pipe bytes to the real server (a server "starting up")."""

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve() -> None:
        time.sleep(delay)
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", listen_port))
            server.listen()
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(("127.0.0.1", target_port))
                threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
                threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_8_connect_retries_until_the_server_answers(database_url):
    from urllib.parse import urlsplit

    from safemig.db import connect

    parts = urlsplit(database_url)
    port = _free_port()
    stop = threading.Event()
    _forward_later(port, parts.port, 1.0, stop)
    try:
        started = time.monotonic()
        with connect(database_url.replace(f":{parts.port}/", f":{port}/"), connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1
        assert time.monotonic() - started >= 0.9
    finally:
        stop.set()


def test_8_connect_timeout_gives_up_and_says_so(cli, stock, database_url):
    port = _free_port()
    dead = database_url.rsplit("@", 1)[0] + f"@127.0.0.1:{port}/x"
    started = time.monotonic()
    result = migrate(cli, stock, "info", "--connect-timeout", "1.5", "--database-url", dead)
    elapsed = time.monotonic() - started
    assert result.exit_code == 3 and "tried" in result.stderr and "over 1.5s" in result.stderr
    assert "--connect-timeout" in result.stderr and "local-secret-pw" not in result.stderr
    assert 1.0 <= elapsed < 8
    wrong_db = database_url.rsplit("/", 1)[0] + "/no_such_db"
    started = time.monotonic()
    assert migrate(cli, stock, "info", "--database-url", wrong_db).exit_code == 3
    assert time.monotonic() - started < 5  # not retried: only refused connections are


# -- 9. application_name -----------------------------------------------------------------


def test_9_application_name_from_url_or_pgappname_wins(database_url, monkeypatch):
    from safemig.db import connect

    with connect(database_url) as conn:
        assert conn.execute("SHOW application_name").fetchone()[0] == "safemig"
    with connect(with_params(database_url, "application_name=billing")) as conn:
        assert conn.execute("SHOW application_name").fetchone()[0] == "billing"
    monkeypatch.setenv("PGAPPNAME", "from-env")
    with connect(database_url) as conn:
        assert conn.execute("SHOW application_name").fetchone()[0] == "from-env"


# -- 10. --lock-wait ---------------------------------------------------------------------


def test_10_lock_wait_bounds_the_wait_and_names_the_holder(cli, stock, database_url):
    holder = psycopg.connect(with_params(database_url, "application_name=orders-api"), autocommit=True)
    name = holder.execute("SELECT current_database()").fetchone()[0]
    holder.execute("SELECT pg_advisory_lock(%s)", (0x3D32AD9E * zlib.crc32(name.encode()),))
    try:
        started = time.monotonic()
        result = migrate(cli, stock, "run", "--lock-wait", "0.6", "--database-url", database_url)
        assert result.exit_code == 1, result.output
        assert time.monotonic() - started >= 0.5
        assert "migration lock is held by pid" in result.stderr and "orders-api" in result.stderr
        assert "waited 0.6s" in result.stderr
        assert migrate(cli, stock, "run", "--lock-wait", "0", "--database-url", database_url).exit_code == 1
        assert scalar(database_url, "SELECT to_regclass('users')") is None
    finally:
        holder.close()
    assert migrate(cli, stock, "run", "--lock-wait", "5", "--database-url", database_url).exit_code == 0


# -- 11. names ---------------------------------------------------------------------------


def test_11_names_follow_sqlx_and_warn_where_it_hides_a_mistake(cli, repo, database_url):
    url = ("--database-url", database_url)
    repo.write("1_a.sql", "CREATE TABLE a (x int);")
    repo.write("notes.sql", "SELECT 1;")  # sqlx ignores it
    repo.write("2_b.down.sql", "DROP TABLE b;")  # a down with no up: sqlx never runs it
    repo.write("+3_c.sql", "CREATE TABLE c (x int);")  # sqlx reads +3 as 3
    repo.write("4_d.sql", "CREATE TABLE d (x int);")
    repo.write("4_d.down.sql", "DROP TABLE d;")  # a simple file plus a down: a pair for sqlx
    result = migrate(cli, repo, "run", *url)
    assert result.exit_code == 0, result.output
    assert "migrations/notes.sql: ignored, as sqlx ignores it" in result.stderr
    assert "migrations/2_b.down.sql: ignored: a down migration for version 2 with no 2_b.up.sql" in result.stderr
    assert "migrations/+3_c.sql: version written with a sign; sqlx (and safemig) read it as 3" in result.stderr
    assert scalar(database_url, "SELECT array_agg(version ORDER BY version) FROM _sqlx_migrations") == [1, 3, 4]
    reverted = migrate(cli, repo, "revert", *url)
    assert reverted.exit_code == 0 and "Reverted 4/d" in reverted.stdout
    assert scalar(database_url, "SELECT to_regclass('d')") is None
    repo.write("\u0663_arabic_three.sql", "SELECT 1;")  # Unicode digits: sqlx refuses them
    refused = migrate(cli, repo, "info", *url)
    assert refused.exit_code == 2 and "is not an integer" in refused.stderr


# -- 12. revert --------------------------------------------------------------------------


def test_12_revert_refuses_to_revert_under_a_version_that_stays(cli, repo, database_url):
    url = ("--database-url", database_url)
    repo.write("1_a.up.sql", "CREATE TABLE a (x int);")
    repo.write("1_a.down.sql", "DROP TABLE a;")
    repo.write("2_b.sql", "CREATE VIEW b AS SELECT * FROM a;")  # no down script, depends on 1
    assert migrate(cli, repo, "run", *url).exit_code == 0
    result = migrate(cli, repo, "revert", *url)  # sqlx would revert 1 underneath 2
    assert result.exit_code == 1
    assert "cannot revert version 1 (a) while version 2 (b) stays applied above it" in result.stderr
    assert scalar(database_url, "SELECT count(*) FROM _sqlx_migrations") == 2


# -- 13. out_of_order --------------------------------------------------------------------


def test_13_out_of_order_policy(cli, stock, database_url):
    url = ("--database-url", database_url)
    late = stock.migrations / "20240103000000_branch_work.sql"
    assert migrate(cli, stock, "run", *url).exit_code == 0
    late.write_text("CREATE TABLE branch_work (x int);\n")
    assert migrate(cli, stock, "run", *url).exit_code == 1  # default: refuse
    (stock.root / "safemig.toml").write_text('out_of_order = "sometimes"\n')
    bad = migrate(cli, stock, "run", *url)
    assert bad.exit_code == 2 and "safemig.toml:1: out_of_order = 'sometimes' is not one of 'refuse', 'warn', 'allow'" in bad.stderr
    (stock.root / "safemig.toml").write_text('migrations_dir = "migrations"\nout_of_order = "warn"\n')
    result = migrate(cli, stock, "run", *url)
    assert result.exit_code == 0, result.output
    assert "version 20240103000000 is older than the newest applied version 20240205170000" in result.stderr
    late2 = stock.migrations / "20240104000000_more.sql"
    late2.write_text("SELECT 1;\n")
    (stock.root / "safemig.toml").write_text(
        'out_of_order = "refuse"\n[envs.dev]\ndatabase_url = "${DEV_URL}"\nout_of_order = "allow"\n'
    )
    os.environ["DEV_URL"] = database_url
    allowed = migrate(cli, stock, "run", "--env", "dev")
    assert allowed.exit_code == 0 and "older than" not in allowed.stderr


# -- 14. mark-applied --reason -----------------------------------------------------------


def test_14_mark_applied_reason_is_kept_and_shown(cli, stock, database_url):
    url = ("--database-url", database_url)
    result = migrate(cli, stock, "mark-applied", "20240101120000", "--reason", "built by hand, INC-7", *url)
    assert result.exit_code == 0, result.output
    text = migrate(cli, stock, "info", *url).stdout
    assert "marked applied by hand (inserted)" in text and "built by hand, INC-7" in text
    (row,) = json.loads(migrate(cli, stock, "info", "--json", *url).stdout)[:1]
    assert row["notes"][0]["reason"] == "built by hand, INC-7" and row["notes"][0]["action"] == "inserted"
    columns = scalar(
        database_url,
        "SELECT array_agg(column_name::text ORDER BY ordinal_position) FROM information_schema.columns "
        "WHERE table_name = '_sqlx_migrations'",
    )
    assert columns == ["version", "description", "installed_on", "success", "checksum", "execution_time"]
    assert scalar(database_url, "SELECT count(*) FROM public._safemig_notes") == 1


def test_4_other_readers_of_the_ledger_use_sqlx_toml_too(cli, repo, database_url):
    """lint's pending list (and deploy, runbook, rehearsal, which share the same calls) read sqlx.toml's table."""
    from safemig.commands.lint import _pending_paths
    from safemig.config import load_config

    repo.sqlx_toml('[migrate]\ntable-name = "ops.ledger"\ncreate-schemas = ["ops"]\nignored-chars = ["\\r"]\n')
    repo.write("1_a.sql", b"CREATE TABLE a (x int);\r\n")
    repo.write("2_b.sql", b"CREATE TABLE b (x int);\r\n")
    assert migrate(cli, repo, "run", "--target-version", "1", "--database-url", database_url).exit_code == 0
    repo.write("1_a.sql", b"CREATE TABLE a (x int);\n")  # a checkout with LF endings: not modified
    config = load_config(cwd=repo.root)
    paths, _major = _pending_paths(config, None, database_url)
    assert [p.name for p in paths] == ["2_b.sql"]


def test_8_connect_timeout_env_key(cli, stock, database_url):
    port = _free_port()
    os.environ["DEAD_URL"] = database_url.rsplit("@", 1)[0] + f"@127.0.0.1:{port}/x"
    (stock.root / "safemig.toml").write_text(
        'migrations_dir = "migrations"\n[envs.dev]\ndatabase_url = "${DEAD_URL}"\nconnect_timeout = 1\n'
    )
    started = time.monotonic()
    result = migrate(cli, stock, "info", "--env", "dev")
    assert result.exit_code == 3 and "over 1s" in result.stderr
    assert time.monotonic() - started < 6
