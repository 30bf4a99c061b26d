#!/bin/sh
# PostgreSQL's server programs for the local stack (the PostgreSQL sink and its tests):
# nothing to do when they are installed; else Debian's package through apt-get, as root or
# with sudo that asks for no password; else a message saying what to install.
set -eu

for bindir in "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/*/bin; do
  if [ -n "$bindir" ] && [ -x "$bindir/initdb" ] && [ -x "$bindir/postgres" ]; then
    exit 0
  fi
done
if command -v initdb >/dev/null 2>&1; then
  exit 0
fi

need() {
  echo "xbus's local stack needs PostgreSQL's server programs (initdb and postgres), which are" \
       "not installed, and $1. Install PostgreSQL's server (Debian/Ubuntu:" \
       "\`apt-get install postgresql\`) so that initdb is in /usr/lib/postgresql/<version>/bin" \
       "or on PATH, then run make again." >&2
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

echo "installing PostgreSQL (Debian's postgresql package) for the local stack..."
install_postgresql() {
  $as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -qq -y --no-install-recommends postgresql
}
# Package lists may be missing or stale (a fresh container has none): refresh once and retry.
install_postgresql || { $as_root apt-get update -qq && install_postgresql; } \
  || need "apt-get could not install the postgresql package (its messages are above)"
