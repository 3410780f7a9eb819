"""Build the krew archive of `kubectl mc` and its manifest with the archive's sha256:

    python hack/plugin_archive.py [--out dist]

writes OUT/kubectl-mc-VERSION.tar.gz (the launcher deploy/krew/kubectl-mc) and OUT/mc.yaml
(deploy/krew/mc.yaml with that sha256), so that
`kubectl krew install --manifest=OUT/mc.yaml --archive=OUT/kubectl-mc-VERSION.tar.gz` installs
it; a release publishes the archive and sets `uri` to it."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import yaml

KREW = Path(__file__).resolve().parents[1] / "deploy" / "krew"


def build(out: Path) -> tuple[Path, Path]:
    manifest = yaml.safe_load((KREW / "mc.yaml").read_text())
    version = manifest["spec"]["version"]
    archive = out / f"kubectl-mc-{version}.tar.gz"
    out.mkdir(parents=True, exist_ok=True)
    launcher = (KREW / "kubectl-mc").read_bytes()
    buffer = io.BytesIO()
    # Fixed owner and time: the same sources make the same archive (and sha256).
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("kubectl-mc")
        info.size, info.mode, info.mtime = len(launcher), 0o755, 0
        tar.addfile(info, io.BytesIO(launcher))
    archive.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    for platform in manifest["spec"]["platforms"]:
        platform["sha256"] = digest
    path = out / "mc.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return archive, path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("dist"))
    archive, manifest = build(parser.parse_args().out)
    print(f"{archive} sha256 {hashlib.sha256(archive.read_bytes()).hexdigest()}")
    print(manifest)


if __name__ == "__main__":
    main()
