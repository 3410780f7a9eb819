"""Copy what the Helm chart ships from elsewhere in the repository into the chart, or check
that the chart's copies are current (--check). Helm reads nothing outside the chart folder, so
the chart keeps copies; this is their one definition, and the chart test runs --check.

- crds/*.yaml (the CRDs; crds/kustomization.yaml is kustomize's, not a CRD) -> crds/
- deploy/monitoring/*.json (Grafana dashboards) -> files/dashboards/
- deploy/monitoring/*.yaml holding alert rules (`groups:` of a rule file, or a
  PrometheusRule) -> files/rules/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = Path("deploy", "helm", "mission-control")
FOLDERS = (("crds", "*.yaml"), ("files/dashboards", "*.json"), ("files/rules", "*.yaml"))


def _is_rules(path: Path) -> bool:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except yaml.YAMLError:
        return False
    return any("groups" in d or d.get("kind") == "PrometheusRule" for d in docs)


def wanted(repo: Path = REPO) -> dict[Path, Path]:
    """Each chart file and its source."""
    chart, monitoring = repo / CHART, repo / "deploy" / "monitoring"
    pairs = {chart / "crds" / p.name: p for p in sorted((repo / "crds").glob("*.yaml"))
             if p.name != "kustomization.yaml"}
    if monitoring.is_dir():
        for p in sorted(monitoring.glob("*.json")):
            pairs[chart / "files" / "dashboards" / p.name] = p
        for p in sorted(monitoring.glob("*.yaml")):
            if _is_rules(p):
                pairs[chart / "files" / "rules" / p.name] = p
    return pairs


def _copies(repo: Path) -> list[Path]:
    return [c for folder, pattern in FOLDERS for c in sorted((repo / CHART / folder).glob(pattern))]


def stale(repo: Path = REPO) -> list[str]:
    """What differs: a copy missing or not byte-equal, or a copy without a source."""
    pairs = wanted(repo)
    problems = [f"{copy.relative_to(repo)} differs from {source.relative_to(repo)}"
                for copy, source in pairs.items()
                if not copy.exists() or copy.read_bytes() != source.read_bytes()]
    problems += [f"{copy.relative_to(repo)} has no source" for copy in _copies(repo)
                 if copy not in pairs]
    return problems


def sync(repo: Path = REPO) -> None:
    pairs = wanted(repo)
    for copy in _copies(repo):
        if copy not in pairs:
            copy.unlink()
    for copy, source in pairs.items():
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(source.read_bytes())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args()
    if args.check:
        problems = stale()
        for line in problems:
            print(line)
        if problems:
            print("run `make chart-files`", file=sys.stderr)
        return 1 if problems else 0
    sync()
    return 0


if __name__ == "__main__":
    sys.exit(main())
