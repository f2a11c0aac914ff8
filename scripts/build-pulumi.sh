#!/usr/bin/env bash
# Provide the Pulumi CLI at the pinned version in .tools/bin.
#
# No registry we can reach ships the Pulumi CLI, and `go install .../cmd/pulumi@vX` refuses
# because pkg/go.mod carries a local `replace` for the SDK. A throwaway wrapper module that
# requires pkg and sdk at the same version (repeating pkg's non-local replaces) builds it from
# the Go module proxy. The version is stamped so the Python SDK's version check passes.
set -euo pipefail

version="${PULUMI_VERSION:-3.274.1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin_dir="$root/.tools/bin"
target="$bin_dir/pulumi"
mkdir -p "$bin_dir"

have_version() { "$1" version 2>/dev/null | tr -d 'v' | grep -qx "$version"; }

# A clone-independent cache, so a fresh checkout of the project does not rebuild either.
user_cache="${XDG_CACHE_HOME:-$HOME/.cache}/shadowshift/pulumi-v$version"
if [ -x "$target" ] && have_version "$target"; then
  [ -x "$user_cache" ] || { mkdir -p "$(dirname "$user_cache")" && cp "$target" "$user_cache"; }
  exit 0
fi
if [ -x "$user_cache" ] && have_version "$user_cache"; then
  cp "$user_cache" "$target"
  exit 0
fi
if existing="$(command -v pulumi 2>/dev/null)" && [ "$existing" != "$target" ] && have_version "$existing"; then
  ln -sf "$existing" "$target"
  echo "pulumi: using $existing (v$version)"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "error: the Pulumi CLI v$version is not on PATH and Go is not installed to build it." >&2
  echo "       Install Go >= 1.26 (https://go.dev/dl) or put pulumi v$version on PATH." >&2
  exit 2
fi

work="$root/.tools/pulumi-build"
mkdir -p "$work"
cd "$work"
cat > go.mod <<MOD
module shadowshift.local/pulumi-build

go 1.26

require (
	github.com/pulumi/pulumi/pkg/v3 v$version
	github.com/pulumi/pulumi/sdk/v3 v$version
)

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
MOD
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
GO
echo "pulumi: building v$version from the Go module proxy (first time only, several minutes)..."
GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod go get "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@v$version"
GOFLAGS=-mod=mod go build -trimpath -o "$target.tmp" \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version" \
  github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
mv "$target.tmp" "$target"
have_version "$target" || { echo "error: built pulumi does not report v$version" >&2; exit 1; }
mkdir -p "$(dirname "$user_cache")" && cp "$target" "$user_cache"
echo "pulumi: built $target"
