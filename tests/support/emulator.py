"""A Kubernetes API for tests: kmock's emulator made as strict as an API server where the operator depends on it.

No API server can run here. `ClusterEmulator` extends `kmock.KubernetesEmulator` (pinned to kmock 0.8:
it relies on its request hooks) with what kopf and the kubernetes client need and stock kmock lacks:
uid/resourceVersion/generation/creationTimestamp on objects, the namespace from the URL, `/status` writes that
touch only the status (and main writes that do not touch it), JSON-patch with a failed `test` answered 422 (kopf's
finalizer depends on it), label selectors on lists and watches (with a record of which client asked with which
selector and which objects reached it), merge patches as RFC 7386 has them (a scalar may become an object and
back), and custom resources pruned, defaulted and validated against their CRD's structural schema on every write,
an invalid one refused with 422 as a real server refuses it; and garbage collection by owner reference: once an
object is gone, the objects it owns go too (`collected` records each, so a test can tell what a client deleted from
what the collector took), unless it was deleted with `propagationPolicy: Orphan`, or is a batch/v1 Job deleted with
no policy (the Job's default), whose dependents lose that owner reference and stay. Still missing, and not needed by
these tests: PUT, strategic-merge lists, foreground deletion (it is collected in the background).

`RunningCluster` serves it on a loopback port; what runs the Jobs and TrainJobs is `support.node`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
import kubernetes
from kmock import KubernetesEmulator, ResourceInfo
from kmock._internal import enums, k8s, rendering

from sweetspot.api.crd import crd

from support.kube_schema import CrdValidator

RESOURCES = {
    "sweetspot.dev/v1alpha1/finetunestudies": ResourceInfo(
        kind="FineTuneStudy",
        singular="finetunestudy",
        namespaced=True,
        subresources={"status"},
        shortnames={"fts"},
        verbs={"list", "watch", "get", "create", "patch", "delete"},
    ),
    "batch/v1/jobs": ResourceInfo(
        kind="Job",
        singular="job",
        namespaced=True,
        subresources={"status"},
        verbs={"list", "watch", "get", "create", "patch", "delete"},
    ),
    "trainer.kubeflow.org/v1alpha1/trainjobs": ResourceInfo(
        kind="TrainJob",
        singular="trainjob",
        namespaced=True,
        subresources={"status"},
        verbs={"list", "watch", "get", "create", "patch", "delete"},
    ),
    "v1/pods": ResourceInfo(
        kind="Pod",
        singular="pod",
        namespaced=True,
        subresources={"status"},
        verbs={"list", "watch", "get", "create", "patch", "delete"},
    ),
    "v1/persistentvolumeclaims": ResourceInfo(
        kind="PersistentVolumeClaim",
        singular="persistentvolumeclaim",
        namespaced=True,
        shortnames={"pvc"},
        verbs={"list", "get", "create", "delete"},
    ),
    "v1/configmaps": ResourceInfo(
        kind="ConfigMap", singular="configmap", namespaced=True, verbs={"list", "get", "create", "patch", "delete"}
    ),
    "v1/secrets": ResourceInfo(kind="Secret", singular="secret", namespaced=True, verbs={"list", "get", "create"}),
    "v1/events": ResourceInfo(kind="Event", singular="event", namespaced=True, verbs={"list", "create", "patch"}),
    "v1/namespaces": ResourceInfo(kind="Namespace", singular="namespace", namespaced=False, verbs={"list", "get"}),
}


class UnprocessableError(k8s.KubernetesError):
    pass


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, null deletes, anything else (a list, a scalar, an object
    over a scalar) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _propagation(request: rendering.Request) -> str | None:
    """A DELETE's `propagationPolicy`: in its query, or in its body (the kubernetes client sends DeleteOptions)."""
    body = request.data if isinstance(request.data, dict) else {}
    policy = request.params.get("propagationPolicy") or body.get("propagationPolicy")
    return str(policy) if policy else None


class ClusterEmulator(KubernetesEmulator):  # type: ignore[misc]
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._version = 0
        self.created: collections.Counter[tuple[str, str, str]] = collections.Counter()
        """How many times each (plural, namespace, name) was created: a Job created twice shows here even if
        deleted since."""
        self.namespaces = ["default"]
        for key, info in RESOURCES.items():
            self.resources[key] = info
        self.schemas = {"sweetspot.dev/v1alpha1/finetunestudies": CrdValidator(crd())}
        """Custom resources by `group/version/plural`, each written only as its CRD's schema allows."""
        self.checking = True
        self.reads: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
        """(client, list|watch, plural, labelSelector) → how many such requests were served: whether a client asks
        the server to filter. The client is the bearer token's user (`RunningCluster.kubeconfig_for`)."""
        self.served: collections.Counter[tuple[str, str, str]] = collections.Counter()
        """(client, plural, name) → how many times an object reached that client in a list or a watch event."""
        self.dependents: dict[str, set[Any]] = collections.defaultdict(set)
        """Owner uid → the keys of the objects created with an owner reference to it."""
        self.collected: list[tuple[str, str, str]] = []
        """(plural, namespace, name) of every object the garbage collector deleted, in order."""

    @contextlib.contextmanager
    def older_crd(self) -> Iterator[None]:
        """Writes meanwhile are stored as they come, as under an older, looser CRD (or a server that was not
        checking): what a buggy client wrote then stays in the object once the schema is back."""
        self.checking = False
        try:
            yield
        finally:
            self.checking = True

    def created_in(self, namespace: str, prefix: str = "") -> dict[tuple[str, str], int]:
        """(plural, name) -> creations, for the objects of one namespace whose names start with `prefix`."""
        return {
            (plural, name): count
            for (plural, ns, name), count in self.created.items()
            if ns == namespace and name.startswith(prefix)
        }

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock 0.8 cannot parse the cluster-scoped `/api/v1/namespaces` (it reads "namespaces" as the start of a
        # namespaced path), and kopf lists and watches namespaces at start-up: serve them here.
        if raw_request.path.rstrip("/") == "/api/v1/namespaces":
            if raw_request.query.get("watch") in ("true", "1"):
                response = aiohttp.web.StreamResponse()
                await response.prepare(raw_request)
                await asyncio.Event().wait()  # no namespace ever changes; ends when the client goes
            items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in self.namespaces]
            return aiohttp.web.json_response(
                {"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": "1"}, "items": items}
            )
        return await super().__call__(raw_request)

    def _current(self, request: rendering.Request) -> dict[str, Any] | None:
        key = (request.resource, request.namespace, request.name)
        if key in self._objects and not self._objects[key].deleted:
            return copy.deepcopy(dict(self._objects[key].raw))
        return None

    async def _handle(self, request: rendering.Request) -> Any:
        # kmock keeps every request for its assertions and matches each new one against that whole history: the
        # cost of a request grows with the run (a 100-study benchmark spent all its time there). Nothing here
        # asserts on past requests, so each is forgotten once answered (a watch when its stream ends).
        try:
            if request.resource is not None and request.action in (enums.action.CREATE, enums.action.UPDATE):
                try:
                    self._prepare(request)
                except UnprocessableError as exc:
                    return await self._render_error(exc)
            key = (request.resource, request.namespace, request.name)
            owner = self._current(request) if self._may_delete(request, key) else None
            try:
                response = await super()._handle(request)
            except k8s.KubernetesError as exc:  # 404, 409...: kmock renders these only inside its own context
                return await self._render_error(exc)
            if request.action == enums.action.CREATE and request.resource is not None and response.status < 300:
                meta = request.data.get("metadata") or {}
                name = meta.get("name", "")
                self.created[(str(request.resource.plural), request.namespace or "", name)] += 1
                for reference in meta.get("ownerReferences") or []:
                    namespace = request.namespace or meta.get("namespace") or ""
                    self.dependents[reference["uid"]].add((request.resource, namespace, name))
                if not response.prepared:
                    response.set_status(201)  # Created, as a server answers (clients read no body from a 200)
            if owner is not None and self._gone(key):
                await self._collect(owner, _propagation(request))
            return response
        finally:
            index = next((i for i, seen in enumerate(self._requests) if seen is request), None)
            if index is not None:
                del self._requests[index]

    def _may_delete(self, request: rendering.Request, key: Any) -> bool:
        """A DELETE, or a write to an object being deleted (removing its last finalizer deletes it)."""
        if request.action == enums.action.DELETE:
            return True
        obj = self._objects[key] if request.action == enums.action.UPDATE and key in self._objects else None
        return obj is not None and not obj.deleted and bool((obj.raw.get("metadata") or {}).get("deletionTimestamp"))

    def _gone(self, key: Any) -> bool:
        return key not in self._objects or bool(self._objects[key].deleted)

    async def _collect(self, owner: dict[str, Any], policy: str | None) -> None:
        """`owner` is gone: delete what it owned (recursively), or orphan it (strip the owner reference)."""
        uid = owner["metadata"]["uid"]
        orphan = policy == "Orphan" or (policy is None and owner.get("kind") == "Job")
        for key in sorted(self.dependents.pop(uid, set()), key=str):
            if self._gone(key):
                continue
            current = copy.deepcopy(dict(self._objects[key].raw))
            meta = current.setdefault("metadata", {})
            references = [r for r in meta.get("ownerReferences") or [] if r["uid"] != uid]
            if orphan or any(self._alive(r["uid"]) for r in references):
                meta["ownerReferences"] = references
                async with self._lock:
                    self._objects[key].patch({"metadata": {"ownerReferences": references or None}})
                    await self._buses[key[0]].put({"type": "MODIFIED", "object": self._objects[key].raw})
                continue
            async with self._lock:
                if meta.get("finalizers"):
                    self._objects[key].patch({"metadata": {"deletionTimestamp": now()}})
                    await self._buses[key[0]].put({"type": "MODIFIED", "object": self._objects[key].raw})
                    continue
                self._objects[key].delete()
                await self._buses[key[0]].put({"type": "DELETED", "object": self._objects[key].last.raw})
            self.collected.append((str(key[0].plural), key[1], key[2]))
            await self._collect(current, "Background")

    def _alive(self, uid: str) -> bool:
        return any(
            not obj.deleted and (obj.raw.get("metadata") or {}).get("uid") == uid for obj in self._objects.values()
        )

    def _prepare(self, request: rendering.Request) -> None:
        self._version += 1
        version = str(self._version)
        resource = request.resource
        validator = (
            self.schemas.get(f"{resource.group}/{resource.version}/{resource.plural}") if self.checking else None
        )
        if request.action == enums.action.CREATE:
            data = request.data
            meta = data.setdefault("metadata", {})
            if "generateName" in meta and "name" not in meta:
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            meta.setdefault("namespace", request.namespace)
            meta.update(uid=str(uuid.uuid4()), resourceVersion=version, generation=1, creationTimestamp=now())
            if validator is not None:
                data.pop("status", None)  # the status subresource: a create never sets it
                object.__setattr__(request, "data", self._admit(validator, None, data))
            return
        current = self._current(request)
        if current is None:
            return  # kmock answers 404
        if isinstance(request.data, list):
            try:
                patched = jsonpatch.apply_patch(current, request.data)
            except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPatchTestFailed) as exc:
                raise UnprocessableError(status=422, reason="Invalid", message=str(exc)) from None
        else:
            patched = merge_patch(current, request.data if isinstance(request.data, dict) else {})
        if request.subresource == "status":
            updated = {k: v for k, v in current.items() if k != "status"}
            if patched.get("status") is not None:
                updated["status"] = patched["status"]
        else:
            updated = {k: v for k, v in patched.items() if k != "status"}
            if "status" in current:
                updated["status"] = current["status"]
        if validator is not None:
            updated = self._admit(validator, current, updated)
        meta = updated.setdefault("metadata", {})
        for key in ("uid", "creationTimestamp", "generation"):  # the server's own, whatever a client sent
            if key in current.get("metadata", {}):
                meta[key] = current["metadata"][key]
        if updated.get("spec") != current.get("spec"):
            meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
        meta["resourceVersion"] = version
        # kmock stores an update as a patch of its own kind; a JSON patch replacing the root is the whole object.
        object.__setattr__(request, "data", [{"op": "replace", "path": "", "value": updated}])

    @staticmethod
    def _admit(validator: CrdValidator, current: dict[str, Any] | None, updated: dict[str, Any]) -> dict[str, Any]:
        stored, errors = validator.admit(updated, current)
        if errors:
            kind = updated.get("kind", "object")
            name = (updated.get("metadata") or {}).get("name", "")
            message = f'{kind}.sweetspot.dev "{name}" is invalid: ' + ", ".join(map(str, errors))
            raise UnprocessableError(status=422, reason="Invalid", message=message)
        return dict(stored)

    @staticmethod
    def client_of(request: rendering.Request) -> str:
        """Who sent a request: the user of its bearer token (`<user>-token`)."""
        token = str(request.headers.get("Authorization") or request.headers.get("authorization") or "")
        return token.removeprefix("Bearer ").removesuffix("-token")

    def _selected(self, request: rendering.Request, obj: Any) -> bool:
        """Whether a listed or watched object passes the request's label selector; counted as served when it does."""
        selector = request.params.get("labelSelector")
        meta = (obj.get("metadata") or {}) if isinstance(obj, dict) else {}
        if selector and not _matches(meta.get("labels") or {}, selector):
            return False
        self.served[(self.client_of(request), str(request.resource.plural), str(meta.get("name", "")))] += 1
        return True

    def _read(self, request: rendering.Request, verb: str) -> None:
        plural = str(request.resource.plural) if request.resource is not None else ""
        self.reads[(self.client_of(request), verb, plural, request.params.get("labelSelector") or "")] += 1

    async def _serve_list(self, request: rendering.Request) -> Any:
        payload = await super()._serve_list(request)
        payload["metadata"]["resourceVersion"] = str(self._version)
        self._read(request, "list")
        payload["items"] = [item for item in payload["items"] if self._selected(request, item)]
        return payload

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[Any]:
        # kmock streams every object of the resource whatever the selector: a server sends only matching ones (an
        # operator that asks for its own Jobs must never receive, let alone parse, anyone else's).
        self._read(request, "watch")
        async for event in super()._serve_watch(request):
            if not isinstance(event, dict) or self._selected(request, event.get("object")):
                yield event


class RunningCluster:
    """The emulator served on a loopback port from its own thread, with a kubeconfig for clients."""

    def __init__(self, directory: Path) -> None:
        self.emulator = ClusterEmulator()
        self.kubeconfig = directory / "kubeconfig"
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="cluster-emulator", daemon=True)
        self.url = ""

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with kmock.Server(self.emulator) as server:
            self.url = str(server.url)
            self._started.set()
            await self._stop.wait()

    def __enter__(self) -> RunningCluster:
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the emulator did not start")
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
                    "users": [{"name": "test", "user": {"token": "test-token"}}],
                    "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "test"}}],
                    "current-context": "emulator",
                }
            )
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def kubeconfig_for(self, user: str) -> Path:
        """A kubeconfig whose requests the emulator attributes to `user` (`ClusterEmulator.reads` and `served`)."""
        path = self.kubeconfig.with_name(f"kubeconfig-{user}")
        config = json.loads(self.kubeconfig.read_text())
        config["users"] = [{"name": "test", "user": {"token": f"{user}-token"}}]
        path.write_text(json.dumps(config))
        return path

    def client(self) -> kubernetes.client.ApiClient:
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        configuration.api_key = {"authorization": "Bearer test-token"}
        return kubernetes.client.ApiClient(configuration)


MERGE = {"_content_type": "application/merge-patch+json"}


@contextlib.contextmanager
def cluster(directory: Path) -> Iterator[RunningCluster]:
    with RunningCluster(directory) as running:
        yield running
