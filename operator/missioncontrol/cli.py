"""`missionctl`: run the operator, and the tools on-call engineers use beside it."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def _run(args: argparse.Namespace) -> int:
    from .main import run

    return run(
        namespaces=args.namespace,
        dry_run=args.dry_run,
        liveness_port=args.liveness_port,
        metrics_port=args.metrics_port,
        verbose=args.verbose,
    )


def _version(_: argparse.Namespace) -> int:
    print(f"missionctl {__version__}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="missionctl", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument("-n", "--namespace", action="append", default=[],
                     help="a namespace to watch (repeat; globs allowed); default: all")
    run.add_argument("--dry-run", action="store_true",
                     help="treat every policy as dryRun: record planned steps, change nothing")
    run.add_argument("--liveness-port", type=int, default=8080,
                     help="serve kopf's liveness probe at http://0.0.0.0:PORT/healthz (0: off)")
    run.add_argument("--metrics-port", type=int, default=9090,
                     help="serve Prometheus metrics at http://0.0.0.0:PORT/metrics (0: off)")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_run)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    sys.exit(args.func(args))
