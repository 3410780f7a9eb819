"""Signal adapters, one module per source: Kubernetes readiness, Prometheus, synthetic HTTP.

They read; they judge nothing (that is `detect/`)."""
