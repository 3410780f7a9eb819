#!/usr/bin/env bash
# Build helm (the chart's renderer and linter, used by the tests) from the Go module proxy into
# the cache beside the control plane. Built only when missing; instant the second time.
#
# helm.sh/helm/v3 has no replace lines, so `go install ...@vX` builds it as published. The
# ldflags are those of helm's own Makefile: its version, and the Kubernetes version that
# `helm template` and `helm lint` assume without a cluster (v1.20 otherwise, older than
# anything the chart targets).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
log() { printf '[build-helm %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ -x "$HELM_BIN/helm" ]; then
  log "helm v$HELM_VERSION: cached in $HELM_BIN"
  exit 0
fi

start=$SECONDS
out="$MC_CACHE/build/helm-v$HELM_VERSION"
rm -rf "$out" && mkdir -p "$out" "$HELM_BIN"
minor=${K8S_VERSION#*.}; minor=${minor%%.*}
ldf="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
ldf+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  ldf+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
done
log "helm v$HELM_VERSION: building (a few minutes cold on 2 cores)"
# Built at low priority: the machine's two cores are shared with test runs.
GOBIN="$out" nice -n 10 go install -trimpath -ldflags "$ldf" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
mv "$out/helm" "$HELM_BIN/helm"
log "helm v$HELM_VERSION: ready in $HELM_BIN ($((SECONDS - start)) s)"
