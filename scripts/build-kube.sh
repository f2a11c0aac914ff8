#!/usr/bin/env bash
# Provide a loopback Kubernetes control plane's binaries and data in .tools (issue 21).
#
# No registry we can reach ships them; all build from the Go module proxy. Each artefact is
# built once per version into a clone-independent cache (~/.cache/shadowshift/<name>-v<version>,
# as scripts/build-pulumi.sh does for the Pulumi CLI) and linked into .tools/bin (binaries) or
# .tools/share (KWOK stage files, Gateway API CRDs). Go's build cache is not what we keep: it
# grows to many GB, and the binaries are all we need.
#
# Usage: build-kube.sh [artefact...]   (default: all; names as in the `all` list below)
#
# Builds run at low priority, one package at a time (GOFLAGS=-p=1) unless KUBE_BUILD_GOFLAGS
# says otherwise: the machine is shared. Cold times on one busy core are in docs/kubernetes.md.
set -euo pipefail

kube_version="${KUBE_VERSION:-1.37.2}"
etcd_version="${ETCD_VERSION:-3.7.3}"
kwok_version="${KWOK_VERSION:-0.8.0}"
gateway_api_version="${GATEWAY_API_VERSION:-1.6.3}"
# Must equal the plugin version the pinned pulumi-kubernetes Python SDK asks for
# (pulumi_kubernetes/pulumi-plugin.json), or the engine refuses the program.
provider_version="${PULUMI_KUBERNETES_VERSION:-4.25.0}"
# The provider module has no tagged release on the proxy; this pseudo-version is its only one.
provider_module_version="v4.0.0-20260115033456-f47bc2d6f199"

root="$(cd "$(dirname "$0")/.." && pwd)"
bin_dir="$root/.tools/bin"
share_dir="$root/.tools/share"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/shadowshift"
mkdir -p "$bin_dir" "$share_dir" "$cache"

export GOFLAGS="${KUBE_BUILD_GOFLAGS:--p=1 -buildvcs=false} -mod=mod"
export CGO_ENABLED=0
nice_go() { nice -n 19 go "$@"; }

work=""
cleanup() { [ -z "$work" ] || rm -rf "$work"; }
trap cleanup EXIT
new_work_dir() { cleanup; work="$(mktemp -d "${TMPDIR:-/tmp}/shadowshift-build-$1.XXXXXX")"; }

# link NAME CACHED DEST: point DEST (in .tools) at the cached artefact (quietly when it does).
link() {
  [ "$(readlink "$3" 2>/dev/null)" = "$2" ] && return 0
  ln -sfn "$2" "$3"
  echo "$1: $3 -> $2"
}

require_go() {
  if ! command -v go >/dev/null 2>&1; then
    echo "error: $1 is not cached in $cache and Go is not installed to build it." >&2
    echo "       Install Go >= 1.26 (https://go.dev/dl) and rerun 'make kube-tools'." >&2
    exit 2
  fi
}

# timed NAME CMD...: run a build step and say how long it took (the figure docs/kubernetes.md
# records), so a slow fresh machine is visible in `make` output.
timed() {
  local name="$1" started=$SECONDS
  shift
  echo "$name: building from the Go module proxy (first time only; see docs/kubernetes.md)..."
  "$@"
  echo "$name: built in $((SECONDS - started)) s"
}

# --- kube-apiserver, kube-controller-manager, kube-scheduler ------------------------------------
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, client-go, ...) with local paths,
# so `go install` refuses it. A wrapper module repeats each of those replaces with the published
# v0.<minor>.<patch> module instead.
kube_wrapper() {
  local mod_file staging_version="v0.${kube_version#*.}"
  mod_file="$(go mod download -json "k8s.io/kubernetes@v$kube_version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    printf 'module shadowshift.local/kube-build\n\ngo 1.26\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$kube_version"
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$mod_file"
    printf ')\n'
  } > go.mod
  printf '//go:build tools\n\npackage tools\n\nimport (\n' > tools.go
  for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
    printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd" >> tools.go
  done
  printf ')\n' >> tools.go
  nice_go mod tidy
}

build_kube_binary() {
  local name="$1" cached="$cache/$1-v$kube_version"
  if [ ! -x "$cached" ]; then
    require_go "$name v$kube_version"
    new_work_dir "$name"
    cd "$work"
    kube_wrapper
    local v="v$kube_version" pkg=k8s.io/component-base/version
    timed "$name" nice_go build -trimpath -o "$cached.tmp" \
      -ldflags "-s -w -X $pkg.gitVersion=$v -X $pkg.gitMajor=${kube_version%%.*} -X $pkg.gitMinor=$(echo "$kube_version" | cut -d. -f2) -X $pkg.gitTreeState=clean" \
      "k8s.io/kubernetes/cmd/$name"
    "$cached.tmp" --version | grep -q "v$kube_version" || { echo "error: $name does not report v$kube_version" >&2; exit 1; }
    mv "$cached.tmp" "$cached"
    cd "$root"
  fi
  link "$name" "$cached" "$bin_dir/$name"
}

# --- etcd -------------------------------------------------------------------------------------------
# etcd's own main package lives in a module with local replaces; its server module exports the
# same entry point, so a three-line main around it builds from the proxy.
build_etcd() {
  local cached="$cache/etcd-v$etcd_version"
  if [ ! -x "$cached" ]; then
    require_go "etcd v$etcd_version"
    new_work_dir etcd
    cd "$work"
    printf 'module shadowshift.local/etcd-build\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' \
      "$etcd_version" > go.mod
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
    nice_go mod tidy
    timed etcd nice_go build -trimpath -ldflags "-s -w" -o "$cached.tmp" .
    "$cached.tmp" --version | grep -q "$etcd_version" || { echo "error: etcd does not report $etcd_version" >&2; exit 1; }
    mv "$cached.tmp" "$cached"
    cd "$root"
  fi
  link etcd "$cached" "$bin_dir/etcd"
}

# --- KWOK and its stage files -------------------------------------------------------------------
# KWOK plays kubelet for fake nodes (Ready, heartbeats, pods Running) with no container runtime.
# It does nothing without stage files; they ship in the module (kustomize/stage/).
build_kwok() {
  local cached="$cache/kwok-v$kwok_version"
  if [ ! -x "$cached" ]; then
    require_go "kwok v$kwok_version"
    new_work_dir kwok
    # `go install pkg@version` takes no -mod flag.
    timed kwok env GOBIN="$work" GOFLAGS="${GOFLAGS% -mod=mod}" nice -n 19 go install -trimpath \
      -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$kwok_version"
    "$work/kwok" --version 2>&1 | grep -q "$kwok_version" || { echo "error: kwok does not report $kwok_version" >&2; exit 1; }
    mv "$work/kwok" "$cached"
  fi
  link kwok "$cached" "$bin_dir/kwok"
}

# copy_from_module NAME MODULE@VERSION SUBDIR: cache SUBDIR of a module's source as NAME (YAML
# only, test data left out), once per version, and link it into .tools/share.
copy_from_module() {
  local name="$1" cached="$cache/$1"
  local link_name="${name%-v*}"
  if [ ! -d "$cached" ]; then
    require_go "$name"
    local dir
    dir="$(go mod download -json "$2" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
    [ -d "$dir/$3" ] || { echo "error: $2 has no $3" >&2; exit 1; }
    rm -rf "$cached.tmp" && mkdir -p "$cached.tmp"
    (cd "$dir/$3" && find . -name '*.yaml' -not -path '*/testdata/*' -exec cp --parents {} "$cached.tmp/" \;)
    chmod -R u+w "$cached.tmp"
    mv "$cached.tmp" "$cached"
  fi
  link "$link_name" "$cached" "$share_dir/$link_name"
}

# --- pulumi-resource-kubernetes -----------------------------------------------------------------
# The provider module's only proxy version is a pseudo-version whose go.mod replaces sdk/v4 with
# a local path, and its main package embeds two generated files that are not in the module zip.
# So: a wrapper module that requires the provider, points sdk/v4 at the published release the
# Python SDK matches, copies the main package in, and regenerates the embedded files with the
# module's own generate.go (the version is written into the schema, as upstream's build does).
build_provider() {
  local cached="$cache/pulumi-resource-kubernetes-v$provider_version"
  if [ ! -x "$cached" ]; then
    require_go "pulumi-resource-kubernetes v$provider_version"
    new_work_dir pulumi-kubernetes
    cd "$work"
    local provider=github.com/pulumi/pulumi-kubernetes/provider/v4 sdk=github.com/pulumi/pulumi-kubernetes/sdk/v4
    cat > go.mod <<MOD
module shadowshift.local/pulumi-kubernetes-build

go 1.26

require (
	$provider $provider_module_version
	$sdk v$provider_version
)

replace $sdk => $sdk v$provider_version
MOD
    local src
    src="$(go mod download -json "$provider@$provider_module_version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
    mkdir -p cmd/pulumi-resource-kubernetes
    cp "$src"/cmd/pulumi-resource-kubernetes/{main.go,generate.go,schema.json,terraform-mapping.json} \
      cmd/pulumi-resource-kubernetes/
    chmod -R u+w cmd
    nice_go mod tidy
    echo "pulumi-resource-kubernetes: regenerating schema-embed.json, terraform-mapping-embed.json..."
    (cd cmd/pulumi-resource-kubernetes && VERSION="$provider_version" nice_go run generate.go)
    timed pulumi-resource-kubernetes nice_go build -trimpath -o "$cached.tmp" \
      -ldflags "-s -w -X $provider/pkg/version.Version=$provider_version" ./cmd/pulumi-resource-kubernetes
    go version -m "$cached.tmp" | grep -q "$sdk[[:space:]]*v$provider_version" \
      || go version -m "$cached.tmp" | grep -q "=> $sdk v$provider_version" \
      || { echo "error: the provider was not built against sdk/v4 v$provider_version" >&2; exit 1; }
    mv "$cached.tmp" "$cached"
    cd "$root"
  fi
  link pulumi-resource-kubernetes "$cached" "$bin_dir/pulumi-resource-kubernetes"
}

all=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok kwok-stage gateway-api-crds
     pulumi-resource-kubernetes)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for target in "${targets[@]}"; do
  case "$target" in
    kube-apiserver|kube-controller-manager|kube-scheduler) build_kube_binary "$target" ;;
    etcd) build_etcd ;;
    kwok) build_kwok ;;
    kwok-stage) copy_from_module "kwok-stage-v$kwok_version" "sigs.k8s.io/kwok@v$kwok_version" kustomize/stage ;;
    gateway-api-crds) copy_from_module "gateway-api-crds-v$gateway_api_version" \
      "sigs.k8s.io/gateway-api@v$gateway_api_version" config/crd/standard ;;
    pulumi-resource-kubernetes) build_provider ;;
    *) echo "error: unknown artefact '$target' (known: ${all[*]})" >&2; exit 2 ;;
  esac
done
