"""The local test environment: a real Kubernetes control plane built from the Go module proxy,
a node simulator standing in for the kubelet, and the real Prometheus server."""
