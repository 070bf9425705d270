#!/bin/sh
# Install smdrd on a Linux box with systemd: a virtualenv in /opt/smdrd, the configuration in /etc/smdrd,
# the hardened units in /etc/systemd/system (smdrd.service for a site; smdrd-central.service for the one central
# collector of a multi-site company, installed but not configured). Run as root from a checkout (or an unpacked
# sdist):
#
#   sudo scripts/install.sh                      # install this checkout
#   sudo scripts/install.sh dist/smdrd-*.whl     # install a built wheel
#
# It never overwrites an existing /etc/smdrd/smdrd.toml, never starts the service and never enables it:
# it prints the commands for that. Re-running it upgrades smdrd in place. See docs/install.md.
#
# Options (or the environment variables in brackets):
#   --prefix DIR     the virtualenv [PREFIX, default /opt/smdrd]
#   --etc DIR        the configuration folder [SMDRD_ETC, default /etc/smdrd]
#   --unit-dir DIR   where the units go [UNIT_DIR, default /etc/systemd/system]
#   --python EXE     Python 3.11 or newer to build the virtualenv with [PYTHON, default python3]
#   --bin-dir DIR    where to link the smdrd command, on root's PATH [BIN_DIR, default /usr/local/bin;
#                    an empty value links nothing]
#   --no-systemd     do not install the units or run systemctl (containers, tests)
# Extra pip options (a local index, --no-deps) can be given in PIP_OPTS.
set -eu

HERE=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/opt/smdrd}
ETC=${SMDRD_ETC:-/etc/smdrd}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
PYTHON=${PYTHON:-python3}
BIN_DIR=${BIN_DIR-/usr/local/bin}
PIP_OPTS=${PIP_OPTS:-}
SYSTEMD=yes
WHAT=$HERE

while [ $# -gt 0 ]; do
    case $1 in
        --prefix) PREFIX=$2; shift 2 ;;
        --etc) ETC=$2; shift 2 ;;
        --unit-dir) UNIT_DIR=$2; shift 2 ;;
        --python) PYTHON=$2; shift 2 ;;
        --bin-dir) BIN_DIR=$2; shift 2 ;;
        --no-systemd) SYSTEMD=no; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        -*) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) WHAT=$1; shift ;;
    esac
done

say() { printf '==> %s\n' "$*"; }

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "install.sh: smdrd needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1 || echo missing)." >&2
    echo "  Debian 12 / Ubuntu 24.04: apt install python3 python3-venv; or pass --python /path/to/python3.11" >&2
    exit 1
fi

if [ ! -x "$PREFIX/bin/python" ]; then
    say "creating the virtualenv $PREFIX"
    "$PYTHON" -m venv "$PREFIX"
fi
say "installing smdrd from $WHAT"
# shellcheck disable=SC2086  # PIP_OPTS is a list of options on purpose
"$PREFIX/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade $PIP_OPTS "$WHAT"
"$PREFIX/bin/smdrd" --version
SMDRD="$PREFIX/bin/smdrd"
if [ -n "$BIN_DIR" ]; then
    # The commands in README.md and docs/install.md (smdrd check-config, smdrd report...) run as typed.
    mkdir -p "$BIN_DIR"
    ln -sfn "$PREFIX/bin/smdrd" "$BIN_DIR/smdrd"
    say "linked $BIN_DIR/smdrd -> $PREFIX/bin/smdrd"
    SMDRD=smdrd
    case ":$PATH:" in *":$BIN_DIR:"*) ;; *) SMDRD="$BIN_DIR/smdrd" ;; esac
fi

say "configuration in $ETC"
mkdir -p "$ETC"
install -d -m 0700 "$ETC/credentials"
if [ -e "$ETC/smdrd.toml" ]; then
    install -m 0644 "$HERE/config/smdrd.example.toml" "$ETC/smdrd.toml.example"
    echo "    kept your $ETC/smdrd.toml; the current example is $ETC/smdrd.toml.example"
else
    install -m 0644 "$HERE/config/smdrd.example.toml" "$ETC/smdrd.toml"
    echo "    wrote $ETC/smdrd.toml from the example: edit [site] and [[sources]] before starting"
fi
if [ -e "$HERE/config/rates.example.csv" ] && [ ! -e "$ETC/rates.example.csv" ]; then
    install -m 0644 "$HERE/config/rates.example.csv" "$ETC/rates.example.csv"
fi
# The central collector's example, refreshed on every run (its own central.toml, if any, is never touched).
install -m 0644 "$HERE/config/central.example.toml" "$ETC/central.toml.example"
mkdir -p "$PREFIX/share/doc/smdrd"
cp "$HERE"/docs/*.md "$PREFIX/share/doc/smdrd/" 2>/dev/null || true
"$PREFIX/bin/smdrd" check-config "$ETC/smdrd.toml" || echo "    (fix the problems above before starting)"

if [ "$SYSTEMD" = yes ]; then
    say "systemd units in $UNIT_DIR"
    mkdir -p "$UNIT_DIR"
    for unit in smdrd.service smdrd-central.service; do
        sed "s#/opt/smdrd/#$PREFIX/#g; s#/etc/smdrd/#$ETC/#g" "$HERE/systemd/$unit" > "$UNIT_DIR/$unit"
        chmod 0644 "$UNIT_DIR/$unit"
    done
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
    START="systemctl enable --now smdrd && journalctl -u smdrd -f"
else
    START="$SMDRD run --config $ETC/smdrd.toml   (under your own supervisor; SIGTERM stops it)"
fi
cat <<NEXT

Next:
  1. edit $ETC/smdrd.toml, then: $SMDRD check-config $ETC/smdrd.toml
  2. secrets (optional): install -m 0600 /dev/stdin $ETC/credentials/mqtt-password
  3. $START

The central collector of a multi-site company (docs/central.md), on one box only: copy
$ETC/central.toml.example to $ETC/central.toml, set [database] url and [mqtt] host, then
  $SMDRD central --config $ETC/central.toml   (or: systemctl enable --now smdrd-central)
NEXT
