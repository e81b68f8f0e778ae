"""Build both images: `make images` (python3 images/build.py --help for the options).

    sweetspot-operator:<appVersion>   operator/Dockerfile on python:3.11-slim
    sweetspot-trainer:<appVersion>    trainer_image/Dockerfile on CUDA PyTorch

The tag is the chart's appVersion, so the chart's default image references are exactly what this builds. The
builder is `docker` where a Docker engine answers (`docker info`; a client binary alone is not enough), else
`buildah`. The dependencies come from a wheelhouse that the host's own pip fills (its index, mirrors, certificates
and caches), so each image builds offline (`--network none`). Where a default base cannot be pulled (no registry
reachable), local bases are built from Debian's packages instead and the build says so:

    localhost/sweetspot-base-python:3.11-bookworm   mmdebstrap: python3 in a venv on PATH (/opt/venv)
    localhost/sweetspot-base-torch:<torch>-cpu      the above with the CPU torch the project pins

Each step prints what it does and how long it took; the sizes and times go to build/images.json.
Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
WHEELHOUSE = BUILD / "wheelhouse"
REQUIREMENTS = ROOT / "images" / "requirements.py"
DEBIAN_SUITE = "bookworm"
PYTHON_BASE = f"localhost/sweetspot-base-python:3.11-{DEBIAN_SUITE}"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd", "libstdc++6", "libgomp1")
"""What the local Python base holds: python3.11 with venv (pip), certificates, useradd for the Dockerfiles, and the
C++ and OpenMP runtimes that manylinux wheels (torch, scipy) expect of the system, as the python images have them."""
VENV_PATH = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONTAINER_PACKAGES = "buildah podman runc mmdebstrap uidmap fuse-overlayfs"


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: str
    default_base: str
    """The Dockerfile's own BASE_IMAGE default (read from it: one home)."""
    wheels: str
    """Which requirement list of images/requirements.py fills its wheelhouse."""


def app_version() -> str:
    chart = (ROOT / "charts" / "sweetspot" / "Chart.yaml").read_text()
    match = re.search(r'^appVersion:\s*"?([^"\s]+)"?', chart, re.M)
    if match is None:
        raise SystemExit("charts/sweetspot/Chart.yaml has no appVersion")
    return match.group(1)


def default_base(dockerfile: str) -> str:
    match = re.search(r"^ARG BASE_IMAGE=(\S+)", (ROOT / dockerfile).read_text(), re.M)
    if match is None:
        raise SystemExit(f"{dockerfile} declares no ARG BASE_IMAGE default")
    return match.group(1)


IMAGES = (
    Image("sweetspot-operator", "operator/Dockerfile", default_base("operator/Dockerfile"), "operator"),
    Image("sweetspot-trainer", "trainer_image/Dockerfile", default_base("trainer_image/Dockerfile"), "trainer"),
)


def say(message: str) -> None:
    print(f"images: {message}", flush=True)


def run(command: list[str], *, quiet: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; a quiet one's output is shown only when it fails."""
    if quiet:
        done = subprocess.run(command, cwd=ROOT, text=True, capture_output=True)
        if check and done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"images: failed ({done.returncode}): {' '.join(command)}")
        return done
    done = subprocess.run(command, cwd=ROOT, text=True)
    if check and done.returncode != 0:
        raise SystemExit(f"images: failed ({done.returncode}): {' '.join(command)}")
    return done


def requirement_lines(kind: str) -> list[str]:
    done = run([sys.executable, str(REQUIREMENTS), kind, str(ROOT / "pyproject.toml")], quiet=True)
    return [line for line in done.stdout.splitlines() if line.strip()]


class Builder:
    """docker or buildah, behind the few verbs this build needs."""

    def __init__(self, tool: str) -> None:
        self.tool = tool

    @staticmethod
    def pick(wanted: str) -> Builder:
        if wanted in ("auto", "docker") and shutil.which("docker"):
            if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
                return Builder("docker")
            if wanted == "docker":
                raise SystemExit("images: `docker info` fails: no Docker engine answers (try --builder buildah)")
        if wanted in ("auto", "buildah") and shutil.which("buildah"):
            return Builder("buildah")
        raise SystemExit(
            "images: no image builder: start a Docker engine, or install buildah "
            f"(Debian/Ubuntu: apt-get install -y {CONTAINER_PACKAGES}; `make images` does that as root)"
        )

    def exists(self, image: str) -> bool:
        command = ["docker", "image", "inspect", image] if self.tool == "docker" else ["buildah", "inspect", image]
        if self.tool == "buildah":
            command[2:2] = ["--type", "image"]
        return subprocess.run(command, capture_output=True).returncode == 0

    def pull(self, image: str) -> bool:
        say(f"pulling {image}")
        command = [self.tool, "pull", "--quiet", image] if self.tool == "buildah" else ["docker", "pull", image]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
            say(f"cannot pull {image}: {reason[:200]}")
            if "short-name" in reason:
                say("  (buildah resolves short names through unqualified-search-registries in registries.conf)")
        return done.returncode == 0

    def build(self, dockerfile: str, tag: str, args: dict[str, str]) -> None:
        command = [self.tool, "build"] if self.tool == "docker" else ["buildah", "bud", "--layers", "--runtime", "runc"]
        command += ["--network", "none", "-f", dockerfile, "-t", tag]
        for key, value in args.items():
            command += ["--build-arg", f"{key}={value}"]
        run([*command, "."])

    def import_rootfs(self, tarball: Path, tag: str, env: dict[str, str]) -> None:
        if self.tool == "docker":
            changes = [arg for key, value in env.items() for arg in ("--change", f"ENV {key}={value}")]
            run(["docker", "import", *changes, str(tarball), tag], quiet=True)
            return
        container = run(["buildah", "from", "scratch"], quiet=True).stdout.strip()
        try:
            run(["buildah", "add", container, str(tarball), "/"], quiet=True)
            settings = [a for key, value in env.items() for a in ("--env", f"{key}={value}")]
            run(["buildah", "config", *settings, container], quiet=True)
            run(["buildah", "commit", "--quiet", container, tag], quiet=True)
        finally:
            run(["buildah", "rm", container], quiet=True, check=False)

    def size_and_layers(self, image: str) -> tuple[int, list[tuple[int, str]]]:
        """The image's size in bytes and its layers (bytes, the instruction that made it), largest first."""
        inspector = ["docker", "image", "inspect"] if self.tool == "docker" else ["podman", "image", "inspect"]
        details = json.loads(run([*inspector, image], quiet=True).stdout)[0]
        if self.tool == "docker":
            lines = run(["docker", "history", "--no-trunc", "--format", "{{json .}}", image], quiet=True).stdout
            history = [json.loads(line) for line in lines.splitlines() if line.strip()]
        else:
            history = json.loads(run(["podman", "history", "--no-trunc", "--format", "json", image], quiet=True).stdout)
        layers = []
        for entry in history:
            size = entry.get("size", entry.get("Size", 0))
            size = size if isinstance(size, int) else _bytes(str(size))
            created = str(entry.get("CreatedBy") or entry.get("createdBy") or "")
            created = created.replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ")
            layers.append((size, " ".join(created.split())[:160]))
        return int(details.get("Size") or details.get("VirtualSize") or 0), sorted(layers, reverse=True)


def _bytes(text: str) -> int:
    match = re.match(r"([\d.]+)\s*([kMGT]?B)", text)
    if match is None:
        return 0
    scale = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}[match.group(2)]
    return int(float(match.group(1)) * scale)


def fill_wheelhouse(kind: str) -> Path:
    """The wheels one image installs, fetched by the host's pip; skipped when the requirement lists are unchanged."""
    folder = WHEELHOUSE / kind
    lists = {"main": requirement_lines(kind), "no-deps": requirement_lines("no-deps") if kind == "trainer" else []}
    if kind == "trainer":
        lists["main"] += requirement_lines("torch")  # for the local CPU base; a pulled base keeps its own torch
    else:
        build_system = re.search(r"requires\s*=\s*\[([^\]]*)\]", (ROOT / "pyproject.toml").read_text())
        lists["main"] += re.findall(r'"([^"]+)"', build_system.group(1) if build_system else "")
    digest = hashlib.sha256(json.dumps(lists, sort_keys=True).encode()).hexdigest()[:16]
    stamp = folder / f".complete-{digest}"
    if stamp.exists():
        say(f"wheelhouse {folder.relative_to(ROOT)}: up to date")
        return folder
    started = time.monotonic()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        requirements.write("\n".join(lists["main"]) + "\n")
        requirements.flush()
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "-d", str(folder)]
        run([*pip, "-r", requirements.name], quiet=True)
        if lists["no-deps"]:
            run([*pip, "--no-deps", *lists["no-deps"]], quiet=True)
    stamp.touch()
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    say(f"wheelhouse {folder.relative_to(ROOT)}: {size:.0f} MiB in {time.monotonic() - started:.0f} s")
    return folder


REBUILT: set[str] = set()
"""Local bases built by this run (`--rebuild-bases` rebuilds each once, not once per image)."""


def local_python_base(builder: Builder, rebuild: bool) -> str:
    if builder.exists(PYTHON_BASE) and (not rebuild or PYTHON_BASE in REBUILT):
        say(f"local base {PYTHON_BASE}: present")
        return PYTHON_BASE
    if shutil.which("mmdebstrap") is None:
        raise SystemExit(f"images: building a local base needs mmdebstrap (apt-get install -y {CONTAINER_PACKAGES})")
    started = time.monotonic()
    say(f"building local base {PYTHON_BASE} from Debian {DEBIAN_SUITE} packages: {', '.join(BASE_PACKAGES)}")
    with tempfile.TemporaryDirectory() as scratch:
        tarball = Path(scratch) / "rootfs.tar"
        run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=essential",
                f"--include={','.join(BASE_PACKAGES)}",
                # A venv makes `python` and `pip` the base's own, as in the python images (Debian's system pip
                # refuses to install: PEP 668).
                '--customize-hook=chroot "$1" python3 -m venv /opt/venv',
                DEBIAN_SUITE,
                str(tarball),
            ],
            quiet=True,
        )
        builder.import_rootfs(tarball, PYTHON_BASE, {"PATH": VENV_PATH, "LANG": "C.UTF-8"})
    REBUILT.add(PYTHON_BASE)
    say(f"local base {PYTHON_BASE}: built in {time.monotonic() - started:.0f} s")
    return PYTHON_BASE


def local_torch_base(builder: Builder, python_base: str, wheels: Path, rebuild: bool) -> str:
    (torch,) = requirement_lines("torch")
    tag = f"localhost/sweetspot-base-torch:{torch.split('==')[1]}-cpu"
    if builder.exists(tag) and (not rebuild or tag in REBUILT):
        say(f"local base {tag}: present")
        return tag
    started = time.monotonic()
    say(f"building local base {tag}: {torch} (CPU) on {python_base}")
    builder.build(
        "images/torch-base.Dockerfile",
        tag,
        {"BASE_IMAGE": python_base, "WHEELS": str(wheels.relative_to(ROOT)), "TORCH": torch},
    )
    REBUILT.add(tag)
    say(f"local base {tag}: built in {time.monotonic() - started:.0f} s")
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make images", description=__doc__.split("\n\n")[0])
    parser.add_argument("--builder", choices=("auto", "docker", "buildah"), default="auto")
    parser.add_argument(
        "--bases",
        choices=("auto", "default", "local"),
        default="auto",
        help="auto: the Dockerfiles' default bases where they can be pulled, else local Debian bases; "
        "default: fail where they cannot; local: always the local bases",
    )
    parser.add_argument("--rebuild-bases", action="store_true", help="rebuild local bases even if present")
    parser.add_argument("--only", choices=[i.name for i in IMAGES], action="append", help="build only this image")
    options = parser.parse_args(argv)

    builder = Builder.pick(options.builder)
    version = app_version()
    say(f"builder {builder.tool}; tag {version} (the chart's appVersion)")
    report: dict[str, dict[str, object]] = {}
    for image in IMAGES:
        if options.only and image.name not in options.only:
            continue
        started = time.monotonic()
        wheels = fill_wheelhouse(image.wheels)
        base = image.default_base
        if options.bases == "local" or not (builder.exists(base) or builder.pull(base)):
            if options.bases == "default":
                raise SystemExit(f"images: the default base {base} cannot be pulled (--bases auto builds local ones)")
            python_base = local_python_base(builder, options.rebuild_bases)
            base = (
                python_base
                if image.wheels == "operator"
                else local_torch_base(builder, python_base, wheels, options.rebuild_bases)
            )
            say(f"{image.name}: on the local base {base} in place of {image.default_base}")
        tag = f"{image.name}:{version}"
        say(f"building {tag} from {image.dockerfile}")
        build_started = time.monotonic()
        args = {"BASE_IMAGE": base, "WHEELS": str(wheels.relative_to(ROOT)), "OFFLINE": "1"}
        builder.build(image.dockerfile, tag, args)
        built = time.monotonic()
        size, layers = builder.size_and_layers(tag)
        report[image.name] = {
            "tag": tag,
            "base": base,
            "bytes": size,
            "seconds": round(built - started, 1),
            "buildSeconds": round(built - build_started, 1),
            "largestLayers": [{"bytes": b, "createdBy": c} for b, c in layers[:4]],
        }
        say(f"{tag}: {size / 2**20:.0f} MiB, built in {built - build_started:.0f} s ({built - started:.0f} s in all)")
        for layer_bytes, created in layers[:3]:
            say(f"    {layer_bytes / 2**20:8.0f} MiB  {created[:110]}")
    BUILD.mkdir(exist_ok=True)
    (BUILD / "images.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    sys.exit(main())
