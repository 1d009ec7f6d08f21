#!/bin/sh
# Installs every build and test dependency from Debian packages, only when
# something is missing. Run as root (CI and fresh machines are root here).
set -eu

PKGS="build-essential pkg-config libh2o-evloop-dev libev-dev libjansson-dev
uuid-dev libcmocka-dev libsqlite3-dev sqlite3 clang libclang-rt-14-dev curl python3 python3-pytest
procps python3-prometheus-client python3-jsonschema python3-yaml systemd mandoc"
[ "${WITH_BENCH:-0}" = 1 ] && PKGS="$PKGS wrk nghttp2-client h2o"
# make test-browser only: Debian's headless-capable Chromium (never a
# browser download of its own).
[ "${WITH_BROWSER:-0}" = 1 ] && PKGS="$PKGS chromium"

# The OpenAPI linter needs npm (nodesource's nodejs ships its own).
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "deps: installing:$missing" >&2
	if [ "$(id -u)" != 0 ]; then
		echo "deps: need root to apt-get install:$missing" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# @redocly/cli, pinned, lints docs/openapi.yaml in the test suite. It is not
# a Debian package: npm installs it into a cache dir outside the tree
# (tests/integration/test_ops.py looks in the same place, or $REDOCLY_DIR).
REDOCLY_VERSION=2.77.0
REDOCLY_DIR=${REDOCLY_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/crush-supervisor/redocly-$REDOCLY_VERSION}
if [ ! -x "$REDOCLY_DIR/node_modules/.bin/redocly" ]; then
	echo "deps: npm install @redocly/cli@$REDOCLY_VERSION into $REDOCLY_DIR" >&2
	mkdir -p "$REDOCLY_DIR"
	npm install --prefix "$REDOCLY_DIR" --no-audit --no-fund --no-save --loglevel=error \
		"@redocly/cli@$REDOCLY_VERSION" >/dev/null ||
		echo "deps: npm install of @redocly/cli failed; the OpenAPI lint test will fail" >&2
fi
