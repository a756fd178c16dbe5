#!/usr/bin/env bash
# Local stand-ins for the images docker-compose.yml and the Dockerfile name, for machines whose
# Docker engine cannot reach an image registry (this project's machines reach Debian's packages,
# PyPI and crates.io only). Each is a Debian bookworm root made with debootstrap plus what the
# official image provides, tagged with the official name, so `docker-compose up --build` and
# scripts/compose-smoke.sh run unchanged. Not for production: use the official images there.
#
#   dockerd --storage-driver=vfs &      # if no engine runs yet
#   scripts/compose-standins.sh         # ~15 min on 2 cores, most of it debootstrap and apt
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

WORK="${STANDINS_DIR:-/var/tmp/hookline-standins}"
mkdir -p "$WORK"
command -v docker >/dev/null && docker info >/dev/null 2>&1 || die "no Docker engine answers"
command -v debootstrap >/dev/null || as_root apt-get install -y -qq debootstrap >/dev/null

if ! docker image inspect hookline-standin-base >/dev/null 2>&1; then
    if [ ! -x "$WORK/rootfs/bin/sh" ]; then
        say "debootstrap: a minimal Debian bookworm root"
        as_root debootstrap --variant=minbase --include=ca-certificates,wget,curl \
            bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log"
    fi
    say "Importing it as hookline-standin-base"
    as_root tar -C "$WORK/rootfs" -c . | docker import - hookline-standin-base >/dev/null
fi

build() { # tag, then the Dockerfile on stdin; the context is $WORK/ctx
    say "Building stand-in $1"
    docker build -q -t "$1" -f - "$WORK/ctx" >/dev/null
}
rm -rf "$WORK/ctx" && mkdir -p "$WORK/ctx"

# nats: the PyPI wheel's nats-server (whatever version it ships, not necessarily the tag's);
# arguments starting with '-' go to nats-server, as the official image's entrypoint does.
# docker-compose.yml mounts its config (deploy/nats/jetstream-durable.conf) under /etc/nats.
ensure_nats_server
cp "$VENV/bin/nats-server" "$WORK/ctx/nats-server"
cat >"$WORK/ctx/nats-entrypoint" <<'EOF'
#!/bin/sh
case "$1" in -*) exec nats-server "$@" ;; esac
exec "$@"
EOF
build nats:2.12.15-alpine <<'EOF'
FROM hookline-standin-base
COPY nats-server nats-entrypoint /usr/local/bin/
RUN chmod +x /usr/local/bin/nats-entrypoint
ENTRYPOINT ["nats-entrypoint"]
CMD ["nats-server"]
EOF

# postgres: Debian's PostgreSQL 15, initialised from POSTGRES_USER/_PASSWORD/_DB on first start.
cat >"$WORK/ctx/pg-entrypoint" <<'EOF'
#!/bin/sh
set -e
PGDATA=/var/lib/postgresql/data
BIN=/usr/lib/postgresql/15/bin
mkdir -p "$PGDATA" /run/postgresql && chown -R postgres:postgres "$PGDATA" /run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "$POSTGRES_PASSWORD" > /tmp/pw && chown postgres /tmp/pw
    su postgres -c "$BIN/initdb -D $PGDATA -U $POSTGRES_USER --pwfile=/tmp/pw --auth-host=scram-sha-256 --auth-local=trust"
    rm /tmp/pw
    echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    su postgres -c "$BIN/pg_ctl -D $PGDATA -w start -o '-c listen_addresses='"
    su postgres -c "$BIN/psql -U $POSTGRES_USER -d postgres -c 'CREATE DATABASE $POSTGRES_DB'"
    su postgres -c "$BIN/pg_ctl -D $PGDATA -w stop"
fi
exec su postgres -c "$BIN/postgres -D $PGDATA -c listen_addresses=*"
EOF
build postgres:15 <<'EOF'
FROM hookline-standin-base
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null && rm -rf /var/lib/apt/lists/*
COPY pg-entrypoint /usr/local/bin/
RUN chmod +x /usr/local/bin/pg-entrypoint && ln -s /usr/lib/postgresql/15/bin/pg_isready /usr/local/bin/pg_isready
ENTRYPOINT ["pg-entrypoint"]
EOF

# prometheus: Debian's package.
build prom/prometheus:v2.53.0 <<'EOF'
FROM hookline-standin-base
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null && rm -rf /var/lib/apt/lists/*
WORKDIR /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
EOF

# The Dockerfile's build stage: this machine's Rust toolchain and a C compiler, and the CAs this
# machine trusts beyond Debian's (a TLS-inspecting egress proxy's), so cargo reaches crates.io.
toolchain="$(rustc --print sysroot)"
as_root rm -rf "$WORK/ctx/toolchain" && cp -a "$toolchain" "$WORK/ctx/toolchain"
mkdir -p "$WORK/ctx/extra-ca"
cp /usr/local/share/ca-certificates/*.crt "$WORK/ctx/extra-ca/" 2>/dev/null || true
build rust:1-bookworm <<'EOF'
FROM hookline-standin-base
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null && rm -rf /var/lib/apt/lists/*
COPY extra-ca /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
COPY toolchain /usr/local/rust
ENV PATH=/usr/local/rust/bin:$PATH
EOF
rm -rf "$WORK/ctx/toolchain"

# The runtime stage: glibc, CA certificates and the `nonroot` user (65532), as distroless has.
build gcr.io/distroless/cc-debian12:nonroot <<'EOF'
FROM hookline-standin-base
RUN echo 'nonroot:x:65532:65532::/home/nonroot:/sbin/nologin' >> /etc/passwd \
 && echo 'nonroot:x:65532:' >> /etc/group
EOF
say "Stand-ins ready: nats:2.12.15-alpine, postgres:15, prom/prometheus:v2.53.0, rust:1-bookworm, gcr.io/distroless/cc-debian12:nonroot"
