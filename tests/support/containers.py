"""Pods as real containers: what the node simulator's container mode runs, and the images tests use.

Each pod's container runs from its own image under podman with runc (crun refuses this kernel's cgroup setup), as a
kubelet would run it: the container's command, args and environment (ConfigMap and Secret references resolved by
the caller), its volumeMounts (emptyDir → a fresh folder, `medium: Memory` → tmpfs, a claim → the test's folder for
it, ConfigMap and Secret volumes → files), the termination-message file bind-mounted at `terminationMessagePath`,
the pod's and the container's securityContext (runAsUser/runAsGroup, runAsNonRoot, readOnlyRootFilesystem with no
extra tmpfs, dropped capabilities, no privilege escalation, fsGroup), no network unless asked, and the CPU and
memory limits. Nothing is rewritten: the trainer sees the paths the Job gives it.

A kubelet refuses to start a container it cannot configure and keeps the pod waiting (CreateContainerConfigError,
ErrImageNeverPull): `ContainerConfigError` carries that reason for the node to report and retry.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PODMAN = ("podman", "--runtime", "runc")
ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=16384:16384")
"""podman's defaults ask for more than this machine allows; these are a kubelet's usual ones, well below it."""
NODE_LABEL = "sweetspot.test/node"
"""On every container the node runs: which node (test) started it, so a test can ask what it left behind."""
POD_LABEL = "sweetspot.test/pod"
OPERATOR_IMAGE, TRAINER_IMAGE = "sweetspot-operator", "sweetspot-trainer"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"


class ContainerConfigError(Exception):
    """The kubelet cannot create the container yet (a missing ConfigMap, an image it may not pull, a root user under
    runAsNonRoot): the pod waits with this reason and the kubelet tries again."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def podman_missing() -> str | None:
    """Why podman cannot run containers here, or None."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        return "podman and runc are not installed (make test-images installs them)"
    done = subprocess.run([*PODMAN, "info"], capture_output=True, text=True)
    return None if done.returncode == 0 else f"podman info failed: {done.stderr.strip()[:300]}"


def image_exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


def image_user(image: str) -> str:
    """The user an image runs as when the pod names none (`USER` in its Dockerfile)."""
    details = json.loads(podman("image", "inspect", image).stdout)[0]
    return str((details.get("Config") or {}).get("User") or "")


def app_version() -> str:
    """The chart's appVersion: the tag `make images` gives both images."""
    chart = (Path(__file__).resolve().parents[2] / "charts" / "sweetspot" / "Chart.yaml").read_text()
    match = re.search(r'^appVersion:\s*"?([^"\s]+)"?', chart, re.M)
    assert match is not None, "Chart.yaml has no appVersion"
    return match.group(1)


def cpus(quantity: str) -> str:
    """A Kubernetes CPU quantity (`1`, `500m`) as podman's --cpus."""
    return str(int(quantity[:-1]) / 1000) if quantity.endswith("m") else str(float(quantity))


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (`512Mi`, `2Gi`, `1G`, `1000`) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i|[kMGT])?", quantity)
    if match is None:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return int(float(match.group(1)) * units.get(match.group(2) or "", 1))


def _fs_group(directory: Path, group: int) -> None:
    """What the kubelet does to a volume for the pod's fsGroup: group-owned, group-writable, new files inherit it."""
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, -1, group, follow_symlinks=False)
        if path.is_dir() and not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o2070)
        elif not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o060)


@dataclasses.dataclass
class Volumes:
    """Where each of a pod's volumes lives on the node."""

    root: Path
    """The pod's own folder: emptyDirs and projected files go under it."""
    claims: Mapping[str, Path]
    """The test's folder for each PersistentVolumeClaim by claim name (else one under `shared`)."""
    shared: Path
    """Claims no test named live here, one folder per claim (the container node: one for the whole node)."""
    read_config_map: Any
    """(name) → the ConfigMap's data, or raises ContainerConfigError."""
    read_secret: Any
    """(name) → the Secret's data (base64 values), or raises ContainerConfigError."""

    def mounts(self, pod_spec: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
        """podman arguments for the container's volumeMounts."""
        by_name = {v["name"]: v for v in pod_spec.get("volumes") or []}
        group = (pod_spec.get("securityContext") or {}).get("fsGroup")
        args: list[str] = []
        for mount in container.get("volumeMounts") or []:
            volume = by_name.get(mount["name"])
            if volume is None:
                raise ContainerConfigError("CreateContainerConfigError", f"volume {mount['name']!r} is not declared")
            target = mount["mountPath"]
            read_only = bool(mount.get("readOnly"))
            if (empty := volume.get("emptyDir")) is not None and empty.get("medium") == "Memory":
                size = f",tmpfs-size={memory_bytes(empty['sizeLimit'])}" if empty.get("sizeLimit") else ""
                args += ["--mount", f"type=tmpfs,destination={target},tmpfs-mode=1777{size}"]
                continue
            source = self._source(volume)
            if group is not None and (volume.get("persistentVolumeClaim") or volume.get("emptyDir") is not None):
                _fs_group(source, int(group))
            if sub := str(mount.get("subPath") or "").strip("/"):
                source = source / sub
                source.mkdir(parents=True, exist_ok=True)
                source.chmod(0o777)
            read_only = read_only or bool(volume.get("configMap") or volume.get("secret"))
            read_only = read_only or bool((volume.get("persistentVolumeClaim") or {}).get("readOnly"))
            args += ["--volume", f"{source}:{target}:{'ro' if read_only else 'rw'}"]
        return args

    def _source(self, volume: Mapping[str, Any]) -> Path:
        name = volume["name"]
        if volume.get("emptyDir") is not None:
            folder = self.root / "volumes" / name
            if not folder.exists():
                folder.mkdir(parents=True)
                folder.chmod(0o777)  # as the kubelet makes an emptyDir: anyone in the pod may write
            return folder
        if (claim := volume.get("persistentVolumeClaim")) is not None:
            folder = self.claims.get(claim["claimName"], self.shared / claim["claimName"])
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        if (source := volume.get("configMap") or volume.get("secret")) is not None:
            is_secret = "secret" in volume
            data = self.read_secret(source["secretName"]) if is_secret else self.read_config_map(source["name"])
            folder = self.root / "volumes" / name
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                if item["key"] not in data:
                    raise ContainerConfigError(
                        "CreateContainerConfigError", f"couldn't find key {item['key']} in {name}"
                    )
                value = data[item["key"]]
                target = folder / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(base64.b64decode(value) if is_secret else value.encode())
                target.chmod(0o444)
            return folder
        raise ContainerConfigError("CreateContainerConfigError", f"volume {name!r}: this node has no such source")


def security_args(pod_spec: Mapping[str, Any], container: Mapping[str, Any], image: str) -> list[str]:
    """podman arguments for the pod's and the container's securityContext (the container's wins)."""
    pod_context = pod_spec.get("securityContext") or {}
    context = {**pod_context, **(container.get("securityContext") or {})}
    args: list[str] = []
    user = context.get("runAsUser")
    group = context.get("runAsGroup")
    if user is not None:
        args += ["--user", f"{user}:{group}" if group is not None else str(user)]
    if context.get("runAsNonRoot"):
        effective = str(user) if user is not None else image_user(image).split(":")[0]
        if effective in ("", "0", "root"):
            raise ContainerConfigError(
                "CreateContainerConfigError", "container has runAsNonRoot and image will run as root"
            )
    if pod_context.get("fsGroup") is not None:
        args += ["--group-add", str(pod_context["fsGroup"])]
    for extra in pod_context.get("supplementalGroups") or []:
        args += ["--group-add", str(extra)]
    if context.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]  # only the pod's volumes are writable, as on a node
    capabilities = context.get("capabilities") or {}
    args += [a for cap in capabilities.get("drop") or [] for a in ("--cap-drop", cap)]
    args += [a for cap in capabilities.get("add") or [] for a in ("--cap-add", cap)]
    if context.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    if context.get("privileged"):
        args += ["--privileged"]
    if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
        args += ["--security-opt", "seccomp=unconfined"]
    return args


def resource_args(container: Mapping[str, Any]) -> list[str]:
    """CPU and memory limits (a GPU cannot be given on this node: it is left out)."""
    limits = (container.get("resources") or {}).get("limits") or {}
    args: list[str] = []
    if "cpu" in limits:
        args += ["--cpus", cpus(str(limits["cpu"]))]
    if "memory" in limits:
        args += ["--memory", str(memory_bytes(str(limits["memory"])))]
    return args


def run_command(
    *,
    name: str,
    node: str,
    pod_spec: Mapping[str, Any],
    container: Mapping[str, Any],
    env: Mapping[str, str],
    volumes: Volumes,
    termination: Path,
    network: str = "none",
) -> list[str]:
    """The `podman run` that runs one pod's container in the foreground (its exit code is the container's)."""
    image = str(container.get("image") or "")
    if not image or not image_exists(image):
        raise ContainerConfigError("ErrImageNeverPull", f"image {image!r} is not present on this node")
    termination.write_text("")
    termination.chmod(0o666)  # whoever the container runs as writes it
    command = [
        *PODMAN,
        "run",
        "--rm",
        "--name",
        name,
        "--hostname",
        str(pod_spec.get("hostname") or name)[:63],
        "--pull",
        "never",
        "--label",
        f"{NODE_LABEL}={node}",
        "--label",
        f"{POD_LABEL}={name}",
        "--network",
        network,
        *ULIMITS,
        *security_args(pod_spec, container, image),
        *resource_args(container),
        *volumes.mounts(pod_spec, container),
        "--volume",
        f"{termination}:{container.get('terminationMessagePath') or DEFAULT_TERMINATION_PATH}:rw",
    ]
    if container.get("workingDir"):
        command += ["--workdir", str(container["workingDir"])]
    for key, value in env.items():
        command += ["--env", f"{key}={value}"]
    if container.get("command"):
        command += ["--entrypoint", json.dumps(list(container["command"]))]
    return [*command, image, *(container.get("args") or [])]


def remove(name: str) -> None:
    """Stop a container at once and remove it (the kubelet killing a pod whose Job was deleted)."""
    podman("rm", "--force", "--time", "0", name, check=False)


def wait_started(name: str, timeout: float = 60) -> None:
    """Until container `name` has started (running, or already ended): a container joining its network namespace
    (`--network container:NAME`) fails while it is only being created. A kubelet starts a pod's containers after its
    sandbox exists; the nodes of a TrainJob here share rank 0's loopback, so the others wait for rank 0's start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = podman("container", "inspect", "--format", "{{.State.Status}}", name, check=False)
        if done.returncode == 0 and done.stdout.strip() in ("running", "exited", "stopped"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"container {name} did not start within {timeout:.0f} s")


def leftovers(node: str) -> list[str]:
    """Containers a node started that still exist."""
    done = podman("ps", "--all", "--filter", f"label={NODE_LABEL}={node}", "--format", "{{.Names}}")
    return done.stdout.split()


def remove_all(node: str) -> None:
    for name in leftovers(node):
        with contextlib.suppress(Exception):
            remove(name)
