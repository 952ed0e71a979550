#!/usr/bin/env bash
# Provisions the test environment: everything the integration tests start, cached outside the repo.
#
# Idempotent: a second run checks the cache and does nothing. Under CI (CI=true) a component that
# cannot be provisioned fails the run; nothing is skipped.
#
#   redis-server      Debian package redis-server
#   promtool          Debian package prometheus
#   moto server       PyPI moto[server], pinned, in a venv
#   etcd              built from the Go module proxy (test/env/go/etcd)
#   kube-apiserver    built from the Go module proxy (test/env/go/kubernetes); or, as envtest does,
#                     taken from $KUBEBUILDER_ASSETS when that folder holds kube-apiserver and etcd
#   helm              built from the Go module proxy (test/env/go/helm)
#   otelcol           a minimal OpenTelemetry Collector (OTLP receiver; debug and OTLP/HTTP
#                     exporters) built from the Go module proxy (test/env/go/otelcol)
#
# Writes $TGFED_CACHE_DIR/testenv/manifest.json (paths and versions) for test/env/*.ts.
set -euo pipefail

KUBERNETES_VERSION=v1.35.4
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.19.5
MOTO_VERSION=5.2.5
OTELCOL_VERSION=v0.165.0 # must match go.opentelemetry.io/collector/otelcol in test/env/go/otelcol

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${TGFED_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tgfed}/testenv"
mkdir -p "$cache"

log() { echo "testenv: $*" >&2; }
fail() { echo "testenv: error: $*" >&2; exit 1; }

apt_updated=0
apt_install() {
  [ "$(id -u)" = 0 ] || fail "$1 is missing; install Debian package(s) '${*:2}' (needs root)"
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    apt-get update -qq >&2
    apt_updated=1
  fi
  log "installing Debian package(s) ${*:2}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${@:2}" >&2
}

# --- Debian packages --------------------------------------------------------------------------
command -v redis-server >/dev/null || apt_install redis-server redis-server
command -v promtool >/dev/null || apt_install promtool prometheus
redis_server="$(command -v redis-server)"
promtool="$(command -v promtool)"

# --- moto in a venv ---------------------------------------------------------------------------
moto_venv="$cache/moto-$MOTO_VERSION"
if [ ! -f "$moto_venv/.complete" ]; then
  log "installing moto[server]==$MOTO_VERSION into $moto_venv"
  rm -rf "$moto_venv"
  python3 -m venv "$moto_venv"
  "$moto_venv/bin/pip" install --quiet "moto[server]==$MOTO_VERSION" >&2
  touch "$moto_venv/.complete"
fi

# --- Go-built binaries ------------------------------------------------------------------------
# Each binary is cached under a key of its own wrapper module (go.mod, go.sum, any Go source) and
# build settings, so a version bump rebuilds that binary and no other. Sets $go_built.
go_build() { # <wrapper dir> <output> <package> [ldflags]
  local key out
  key="$( { cat "$here/go/$1/go.mod" "$here/go/$1/go.sum"; cat "$here/go/$1"/*.go 2>/dev/null || true; echo "$3 ${4:-}"; } | sha256sum | cut -c1-16)"
  out="$cache/go/$2-$key/$2"
  go_built="$out"
  [ -x "$out" ] && return 0
  command -v go >/dev/null || fail "go is required to build $2 (Go module proxy)"
  log "building $2 from the Go module proxy (first run only; several minutes for kube-apiserver)"
  mkdir -p "$(dirname "$out")"
  (cd "$here/go/$1" && go build -trimpath -ldflags "-s -w ${4:-}" -o "$out.tmp" "$3")
  mv "$out.tmp" "$out"
}

etcd="" kube_apiserver=""
if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
  log "using kube-apiserver and etcd from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  etcd="$KUBEBUILDER_ASSETS/etcd"
  kube_apiserver="$KUBEBUILDER_ASSETS/kube-apiserver"
else
  [ -z "${KUBEBUILDER_ASSETS:-}" ] || fail "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS holds no kube-apiserver and etcd"
  go_build etcd etcd go.etcd.io/etcd/server/v3
  etcd="$go_built"
  k8s_minor="${KUBERNETES_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
  go_build kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver \
    "-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$k8s_minor"
  kube_apiserver="$go_built"
fi
go_build helm helm helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
helm="$go_built"
grep -q "go.opentelemetry.io/collector/otelcol $OTELCOL_VERSION\$" "$here/go/otelcol/go.mod" \
  || fail "OTELCOL_VERSION=$OTELCOL_VERSION differs from test/env/go/otelcol/go.mod"
go_build otelcol otelcol . "-X main.version=$OTELCOL_VERSION"
otelcol="$go_built"

# --- manifest ---------------------------------------------------------------------------------
version_of() { "$@" 2>/dev/null | head -1 | tr -d '"\\' || true; }
manifest="$cache/manifest.json"
cat > "$manifest.tmp" <<JSON
{
  "redisServer": "$redis_server",
  "promtool": "$promtool",
  "motoServer": "$moto_venv/bin/moto_server",
  "etcd": "$etcd",
  "kubeApiserver": "$kube_apiserver",
  "helm": "$helm",
  "otelcol": "$otelcol",
  "versions": {
    "redis": "$(version_of "$redis_server" --version)",
    "promtool": "$(version_of "$promtool" --version)",
    "moto": "$MOTO_VERSION",
    "etcd": "$(version_of "$etcd" --version)",
    "kubeApiserver": "$(version_of "$kube_apiserver" --version)",
    "helm": "$(version_of "$helm" version --short)",
    "otelcol": "$(version_of "$otelcol" --version)"
  }
}
JSON
mv "$manifest.tmp" "$manifest"
log "ready: $manifest ($(du -sh "$cache" | cut -f1) cached)"
