"""Mission Control: incident runbooks as automated, auditable remediation on Kubernetes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mission-control")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

GROUP = "missioncontrol.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
