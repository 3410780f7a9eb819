# Pinned versions and the cache location, sourced by the hack/ scripts.
# Kubernetes v1.37.2: the newest release on the module proxy; its go.mod asks for go 1.26.0,
# which the machine's Go 1.26 satisfies (no GOTOOLCHAIN download needed).
# etcd v3.7.x: the series Kubernetes 1.37's own go.mod requires (etcd client v3.7.0).
K8S_VERSION=${K8S_VERSION:-1.37.2}
K8S_STAGING=0.${K8S_VERSION#1.}
ETCD_VERSION=${ETCD_VERSION:-3.7.3}
MC_CACHE=${MC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mission-control}
MC_BIN=$MC_CACHE/bin/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION
# Helm v3.22.0: the newest v3 on the module proxy; its go.mod asks for go 1.26.0 and pins the
# same k8s.io client modules (v0.37) as the control plane, so it needs no toolchain download.
HELM_VERSION=${HELM_VERSION:-3.22.0}
HELM_BIN=$MC_CACHE/bin/helm-v$HELM_VERSION
