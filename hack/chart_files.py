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
CHART = REPO / "deploy" / "helm" / "mission-control"
MONITORING = REPO / "deploy" / "monitoring"


def _is_rules(path: Path) -> bool:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except yaml.YAMLError:
        return False
    return any("groups" in d or d.get("kind") == "PrometheusRule" for d in docs)


def wanted() -> dict[Path, Path]:
    """Each chart file and its source."""
    pairs = {CHART / "crds" / p.name: p for p in sorted((REPO / "crds").glob("*.yaml"))
             if p.name != "kustomization.yaml"}
    if MONITORING.is_dir():
        for p in sorted(MONITORING.glob("*.json")):
            pairs[CHART / "files" / "dashboards" / p.name] = p
        for p in sorted(MONITORING.glob("*.yaml")):
            if _is_rules(p):
                pairs[CHART / "files" / "rules" / p.name] = p
    return pairs


def stale() -> list[str]:
    """What differs: a copy missing or not byte-equal, or a copy without a source."""
    pairs = wanted()
    problems = [f"{copy.relative_to(REPO)} differs from {source.relative_to(REPO)}"
                for copy, source in pairs.items()
                if not copy.exists() or copy.read_bytes() != source.read_bytes()]
    for folder, pattern in (("crds", "*"), ("files/dashboards", "*.json"),
                            ("files/rules", "*.yaml")):
        for copy in sorted((CHART / folder).glob(pattern)):
            if copy not in pairs:
                problems.append(f"{copy.relative_to(REPO)} has no source")
    return problems


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
    pairs = wanted()
    for copy in [c for folder in ("crds", "files/dashboards", "files/rules")
                 for c in (CHART / folder).glob("*.*") if c.suffix in (".yaml", ".json")]:
        if copy not in pairs:
            copy.unlink()
    for copy, source in pairs.items():
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(source.read_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
