"""Every label and annotation name the operator writes or reads on objects, in one place, so a
name is spelled once and `grep` finds every use."""

PREFIX = "missioncontrol.dev"

# On Incidents (and the Jobs and objects made for one).
POLICY = f"{PREFIX}/policy"
TARGET = f"{PREFIX}/target"
RUNBOOK = f"{PREFIX}/runbook"
INCIDENT = f"{PREFIX}/incident"
# The policy may live in another namespace than the incident (a namespaceSelector policy).
POLICY_NAMESPACE = f"{PREFIX}/policy-namespace"

# On guarded Deployments.
LAST_HEALTHY = f"{PREFIX}/last-healthy-revision"
FROZEN = f"{PREFIX}/frozen"
FROZEN_BY = f"{PREFIX}/frozen-by"
# Which service a Deployment belongs to, for ServiceOwnership: ours first, then the
# well-known ones.
SERVICE = (f"{PREFIX}/service", "app.kubernetes.io/part-of", "app.kubernetes.io/name", "app")

# On the freeze webhook's certificate Secret.
CERTIFICATE_STAGED_AT = f"{PREFIX}/next-certificate-staged-at"
