# syntax=docker/dockerfile:1
# safemig as a container image: Python, safemig and a PostgreSQL client, nothing else.
#
#   docker build -t safemig .                                  # PostgreSQL 17 client from PGDG
#   docker build -t safemig --build-arg PG_MAJOR=18 .          # pg_dump must be >= your server's major
#   docker build -t safemig --build-arg PG_APT=debian .        # Debian's own client (trixie: 17 only)
#   docker run --rm -e DATABASE_URL -v "$PWD:/app:ro" safemig safemig migrate info
#
# compose.yaml beside this file runs it as the guide's `migrate` service. The entrypoint
# (docker/entrypoint.py) waits for the database (SAFEMIG_WAIT_TIMEOUT seconds, default 60), then
# runs the command: by default `safemig migrate run`, in /app (mount your repository there).

ARG PYTHON_VERSION=3.13
ARG DEBIAN_RELEASE=trixie

# ---- stage 1: build safemig's wheel (only the wheel leaves this stage) ----
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY requirements/lock.txt requirements/lock.txt
# The build backend at the version (and hash) the lock pins: the entry for setuptools, cut out of
# the lock, so that nothing unpinned is downloaded to build the wheel.
RUN awk '/^[a-z0-9]/ { keep = /^setuptools==/ } keep' requirements/lock.txt > /tmp/build-requirements.txt \
 && pip install --no-cache-dir --require-hashes --no-deps -r /tmp/build-requirements.txt
# LICENSE* (a wildcard): the wheel carries the license file, and a checkout without one still builds.
COPY pyproject.toml README.md LICENSE* ./
COPY safemig/ safemig/
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /dist .

# ---- stage 2: the image ----
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}

# The PostgreSQL client (pg_dump, pg_restore, psql, pg_isready) of this major. safemig refuses a
# pg_dump older than the server, so pick at least your production server's major.
ARG PG_MAJOR=17
# Where the client comes from:
#   pgdg   - PostgreSQL's own apt repository (apt.postgresql.org): every supported major (14-18)
#            on every Debian release, updated with each minor release; costs a third-party apt
#            source and its signing key (fetched over HTTPS at build time).
#   debian - Debian's archive only: no third-party source, security updates from Debian, but one
#            major per release (trixie: 17, bookworm: 15), so PG_MAJOR must be that one.
ARG PG_APT=pgdg

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Package versions are not pinned: the base image tag and PG_MAJOR choose them, and the point of
# rebuilding is to get the current minor release and its security fixes.
# hadolint ignore=DL3008
RUN set -eux; \
    . /etc/os-release; \
    apt-get update; \
    if [ "$PG_APT" = pgdg ]; then \
      install -d /usr/share/postgresql-common/pgdg; \
      python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
        https://www.postgresql.org/media/keys/ACCC4CF8.asc /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc; \
      echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list; \
      apt-get update; \
    elif [ "$PG_APT" != debian ]; then \
      echo "PG_APT must be pgdg or debian, not '$PG_APT'" >&2; exit 2; \
    fi; \
    if ! apt-cache show "postgresql-client-${PG_MAJOR}" >/dev/null 2>&1; then \
      echo "postgresql-client-${PG_MAJOR} is not available from PG_APT=${PG_APT} on Debian ${VERSION_CODENAME}; use --build-arg PG_APT=pgdg or another PG_MAJOR" >&2; \
      exit 2; \
    fi; \
    apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}"; \
    rm -rf /var/lib/apt/lists/*; \
    pg_dump --version

# safemig's dependencies at the locked versions, hashes checked, then safemig's wheel itself.
COPY requirements/runtime.txt /tmp/requirements.txt
RUN --mount=type=bind,from=build,source=/dist,target=/dist \
    pip install --no-cache-dir --require-hashes --no-deps -r /tmp/requirements.txt \
 && pip install --no-cache-dir --no-deps /dist/*.whl \
 && pip check \
 && rm /tmp/requirements.txt \
 && safemig --version

COPY --chmod=0755 docker/entrypoint.py /usr/local/bin/safemig-entrypoint

# Not root: safemig needs no privileges, and a mounted repository is best mounted read-only.
RUN groupadd --system --gid 10001 safemig \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/safemig safemig
USER 10001:10001
WORKDIR /app
ENV PYTHONUNBUFFERED=1

ENTRYPOINT ["safemig-entrypoint"]
CMD ["safemig", "migrate", "run"]
