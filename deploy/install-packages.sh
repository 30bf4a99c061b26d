#!/bin/sh
# The machine's programs the local stack and its tests use, from Debian's packages:
# PostgreSQL's server (the PostgreSQL sink); Prometheus with promtool, Alertmanager and the
# node exporter (the operators' view and its alert rules); Chromium and CJK fonts (the test
# that renders the operators' console page). Nothing to do for what is installed; else
# apt-get, as root or with sudo that asks for no password; else a message saying what to
# install.
set -eu

has_postgres() {
  for bindir in "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/*/bin; do
    if [ -n "$bindir" ] && [ -x "$bindir/initdb" ] && [ -x "$bindir/postgres" ]; then
      return 0
    fi
  done
  command -v initdb >/dev/null 2>&1
}

has_prometheus() {
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
}

has_node_exporter() {
  command -v prometheus-node-exporter >/dev/null 2>&1 || command -v node_exporter >/dev/null 2>&1
}

has_chromium() {
  command -v chromium >/dev/null 2>&1 && [ -d /usr/share/fonts/opentype/noto ]
}

has_alertmanager() {
  command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1
}

missing=""
has_postgres || missing="$missing postgresql"
has_prometheus || missing="$missing prometheus"
has_alertmanager || missing="$missing prometheus-alertmanager"
has_node_exporter || missing="$missing prometheus-node-exporter"
has_chromium || missing="$missing chromium fonts-noto-cjk"
[ -z "$missing" ] && exit 0

need() {
  echo "xbus's local stack needs Debian's packages$missing (PostgreSQL's server programs," \
       "Prometheus with promtool, Alertmanager, the node exporter, Chromium and CJK fonts)," \
       "which are not all installed, and $1." \
       "Install them (\`apt-get install$missing\`), then run make again." >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || need "this machine has no apt-get to install them with"
if [ "$(id -u)" -eq 0 ]; then
  as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root="sudo -n"
else
  need "installing them needs root, or sudo without a password"
fi

echo "installing Debian's packages$missing for the local stack..."
install_missing() {
  # shellcheck disable=SC2086  # one word per package
  $as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -qq -y --no-install-recommends $missing
}
# Package lists may be missing or stale (a fresh container has none): refresh once and retry.
install_missing || { $as_root apt-get update -qq && install_missing; } \
  || need "apt-get could not install them (its messages are above)"

# The local stack runs its own Prometheus, Alertmanager and node exporter on loopback; the
# system services these packages start on a machine with systemd would hold the same ports.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for service in prometheus prometheus-alertmanager prometheus-node-exporter; do
    case "$missing " in
      *" $service "*) $as_root systemctl disable --now "$service" >/dev/null 2>&1 || true ;;
    esac
  done
fi
