#!/bin/sh
# Installs every build and test dependency from Debian packages, only when
# something is missing. Run as root (CI and fresh machines are root here).
set -eu

PKGS="build-essential pkg-config libh2o-evloop-dev libev-dev libjansson-dev
uuid-dev libcmocka-dev clang libclang-rt-14-dev curl python3 python3-pytest
procps python3-prometheus-client systemd mandoc"
[ "${WITH_BENCH:-0}" = 1 ] && PKGS="$PKGS wrk nghttp2-client h2o"
# make test-browser only: Debian's headless-capable Chromium (never a
# browser download of its own).
[ "${WITH_BROWSER:-0}" = 1 ] && PKGS="$PKGS chromium"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing" >&2
if [ "$(id -u)" != 0 ]; then
	echo "deps: need root to apt-get install:$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
