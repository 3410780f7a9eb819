#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kubectl and etcd from the Go module proxy
# into a cache outside the repository. Rebuilds only what is missing.
#
# Why a wrapper module: k8s.io/kubernetes requires its staging modules at v0.0.0 (never
# published) through relative replace lines, so `go install k8s.io/kubernetes/cmd/...@vX`
# cannot work. A module of our own that requires k8s.io/kubernetes and replaces each
# staging module with its published v0.Y.Z builds fine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
mkdir -p "$MC_BIN" "$MC_CACHE/build"

log() { printf '[build-control-plane %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# Print progress while a long go command runs: the build prints nothing for minutes.
with_progress() {
  local label=$1; shift
  "$@" &
  local pid=$! start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30 & wait $! || true
    kill -0 "$pid" 2>/dev/null && log "$label: still building ($((SECONDS - start)) s)"
  done
  wait "$pid"
}

build_kubernetes() {
  local want=(kube-apiserver kube-controller-manager kubectl) missing=()
  for b in "${want[@]}"; do [ -x "$MC_BIN/$b" ] || missing+=("$b"); done
  [ ${#missing[@]} -eq 0 ] && { log "kubernetes v$K8S_VERSION: cached in $MC_BIN"; return; }

  local mod="$MC_CACHE/build/k8s-v$K8S_VERSION"
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  log "kubernetes v$K8S_VERSION: preparing the wrapper module in $mod"
  go mod init local.test/k8sbins >/dev/null 2>&1
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  # Staging modules are exactly those that the tag replaces with ./staging/src/... paths.
  local staging
  staging=$(sed -nE 's#^\s*(k8s\.io/[a-z0-9-]+) => \./staging/.*#\1#p' "$gomod")
  local n=0 args=()
  for m in $staging; do args+=("-replace=$m=$m@v$K8S_STAGING"); n=$((n + 1)); done
  go mod edit "${args[@]}" "-require=k8s.io/kubernetes@v$K8S_VERSION"
  go mod edit -go="$(sed -nE 's/^go ([0-9.]+)$/\1/p' "$gomod")"
  log "kubernetes v$K8S_VERSION: $n staging modules replaced with v$K8S_STAGING"
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  with_progress "go mod tidy" go mod tidy
  local minor=${K8S_VERSION#*.}; minor=${minor%%.*}
  local ldf="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION"
  ldf+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ldf+=" -X k8s.io/component-base/version.gitTreeState=clean"
  ldf+=" -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION"
  ldf+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  log "kubernetes v$K8S_VERSION: building ${missing[*]} (the cold build takes a while on 2 cores)"
  local pkgs=()
  for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  with_progress "kubernetes" go build -trimpath -ldflags "$ldf" -o "$mod/out/" "${pkgs[@]}"
  for b in "${missing[@]}"; do mv "$mod/out/$b" "$MC_BIN/$b"; done
  log "kubernetes v$K8S_VERSION: done"
}

build_etcd() {
  [ -x "$MC_BIN/etcd" ] && { log "etcd v$ETCD_VERSION: cached in $MC_BIN"; return; }
  local mod="$MC_CACHE/build/etcd-v$ETCD_VERSION"
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  log "etcd v$ETCD_VERSION: preparing the wrapper module in $mod"
  go mod init local.test/etcdbin >/dev/null 2>&1
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  go mod edit "-require=go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  with_progress "go mod tidy (etcd)" go mod tidy
  with_progress "etcd" go build -trimpath -ldflags "-s -w" -o "$mod/out/etcd" go.etcd.io/etcd/server/v3
  mv "$mod/out/etcd" "$MC_BIN/etcd"
  log "etcd v$ETCD_VERSION: done"
}

start=$SECONDS
build_etcd
build_kubernetes
log "binaries ready in $MC_BIN ($((SECONDS - start)) s)"
