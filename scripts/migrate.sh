#!/usr/bin/env bash
# The guide's helper script, as a thin wrapper over safemig. Copy it into your repository's
# scripts/ (it works on the repository it sits in: the directory above scripts/).
#
#   ./scripts/migrate.sh run [OPTIONS]      safemig migrate run      (apply pending migrations)
#   ./scripts/migrate.sh info [OPTIONS]     safemig migrate info     (every version and its state)
#   ./scripts/migrate.sh revert [OPTIONS]   safemig migrate revert   (the newest applied one)
#   ./scripts/migrate.sh lint [OPTIONS]     safemig lint
#   ./scripts/migrate.sh deploy OPTIONS     safemig deploy           (e.g. --env prod --dry-run)
#
# OPTIONS go to safemig unchanged; it runs in the repository root. The database is DATABASE_URL (or --env NAME, --database-url
# URL), as with safemig itself: `DATABASE_URL=$STAGING_DB ./scripts/migrate.sh run` works.
#
# .env in the repository is loaded first when it exists (KEY=VALUE lines, as docker compose reads
# them; `export ` prefixes, comments and quotes allowed), without printing anything from it and
# without overriding a variable that is already set. safemig is the repository's .venv one when
# there is one, else the one on PATH. The exit code is safemig's (see the README's exit codes);
# 2 for a usage mistake here or an unreadable .env line.
set -euo pipefail

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

load_dotenv() {
  local file="$1" line key value n=0
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line="${line%$'\r'}"
    # Skip blank lines and comments.
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    line="${line#"${line%%[![:space:]]*}"}"
    line="${line#export }"
    if [[ ! "$line" =~ ^([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=[[:space:]]*(.*)$ ]]; then
      # Name the line, never its content: it may hold a secret.
      echo "migrate.sh: $file:$n: not a KEY=VALUE line" >&2
      echo "hint: write NAME=value (a # starts a comment line)" >&2
      exit 2
    fi
    key="${BASH_REMATCH[1]}"
    value="${BASH_REMATCH[2]}"
    if [[ "$value" =~ ^\"(.*)\"[[:space:]]*$ || "$value" =~ ^\'(.*)\'[[:space:]]*$ ]]; then
      value="${BASH_REMATCH[1]}"
    else
      value="${value%%[[:space:]]#*}"                      # an inline comment after an unquoted value
      value="${value%"${value##*[![:space:]]}"}"           # trailing spaces
    fi
    if [ -z "${!key+set}" ]; then
      export "$key=$value"
    fi
  done < "$file"
}

if [ $# -eq 0 ]; then
  usage >&2
  exit 2
fi
command="$1"
shift
case "$command" in
  run | info | revert) args=(migrate "$command" "$@") ;;
  lint | deploy) args=("$command" "$@") ;;
  -h | --help | help)
    usage
    exit 0
    ;;
  *)
    echo "migrate.sh: unknown command '$command'" >&2
    echo "hint: one of run, info, revert, lint, deploy (./scripts/migrate.sh --help)" >&2
    exit 2
    ;;
esac

cd "$root"
if [ -f .env ]; then
  load_dotenv .env
fi

if [ -x .venv/bin/safemig ]; then
  safemig=.venv/bin/safemig
elif command -v safemig >/dev/null 2>&1; then
  safemig=safemig
else
  echo "migrate.sh: safemig is not installed (no .venv/bin/safemig, none on PATH)" >&2
  echo "hint: install safemig (README: \"Use it in your project\") or make .venv with it" >&2
  exit 2
fi
exec "$safemig" "${args[@]}"
