# Pinned versions and the cache location, sourced by the hack/ scripts.
# Kubernetes v1.37.2: the newest release on the module proxy; its go.mod asks for go 1.26.0,
# which the machine's Go 1.26 satisfies (no GOTOOLCHAIN download needed).
# etcd v3.7.x: the series Kubernetes 1.37's own go.mod requires (etcd client v3.7.0).
K8S_VERSION=${K8S_VERSION:-1.37.2}
K8S_STAGING=0.${K8S_VERSION#1.}
ETCD_VERSION=${ETCD_VERSION:-3.7.3}
MC_CACHE=${MC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mission-control}
MC_BIN=$MC_CACHE/bin/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION
