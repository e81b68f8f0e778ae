"""Kubernetes Events on studies, aggregated the way Kubernetes' own event recorder aggregates them.

The same reason and message on the same object update one Event (its `count`, `series` and `lastTimestamp`)
instead of creating another, and an Event that keeps recurring is written again at most every
`EVENT_REPEAT_SECONDS` (the occurrences in between are counted, not posted): a study whose storage is down for an
hour shows one Event with a count, not one per reconcile. An Event whose message changes while its condition
persists (an outage's error text) is posted with `persistent=True`: one Event per reason, message updated.

kopf's `kopf.event` / `kopf.warn` cannot do this: each call creates a new Event object with count 1 (kopf's
`posting` queue has no correlation of repeats), so this module writes Events with the kubernetes client.
Sync calls only: it runs in the reconcile's worker thread.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

EVENT_REPEAT_SECONDS = float(os.environ.get("SWEETSPOT_EVENT_REPEAT_SECONDS", "300"))
"""A recurring Event is written again at most this often (Kubernetes' recorder has a similar spam filter)."""
EVENT_TTL_SECONDS = 3600.0
"""What the recorder remembers of an Event: an API server keeps Events one hour by default, and after that a
repeat is news again."""
COMPONENT = "sweetspot-operator"
MERGE = "application/merge-patch+json"

log = logging.getLogger("sweetspot.cluster.events")


def _timestamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Involved:
    """The object an Event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str | None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Involved:
        meta = body["metadata"]
        return cls(
            str(body.get("apiVersion", "")), str(body.get("kind", "")), meta["namespace"], meta["name"], meta.get("uid")
        )


@dataclass
class _Seen:
    name: str
    """The Event object's name."""
    count: int
    written: float
    """When the Event object was last written (monotonic seconds)."""
    last: float
    """When it last occurred (monotonic seconds)."""


class EventRecorder:
    """Posts Events, one object per (object, type, reason, message), or per (object, type, reason) when
    persistent; thread-safe (reconciles of different studies post at once)."""

    def __init__(
        self,
        core: Callable[[], kubernetes.client.CoreV1Api] = kubernetes.client.CoreV1Api,
        repeat_seconds: float = EVENT_REPEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core = core
        self.repeat_seconds = repeat_seconds
        self._clock = clock
        self._seen: dict[tuple[str, ...], _Seen] = {}
        self._lock = threading.Lock()

    def post(
        self, body: Mapping[str, Any], reason: str, message: str, warning: bool = False, persistent: bool = False
    ) -> None:
        """Record that `reason` happened to the object of `body` (its `metadata` and `apiVersion`/`kind`)."""
        involved = Involved.of(body)
        kind = "Warning" if warning else "Normal"
        message = message[:1024]
        key = (involved.namespace, involved.uid or involved.name, kind, reason, "" if persistent else message)
        now = self._clock()
        with self._lock:
            self._expire(now)
            seen = self._seen.get(key)
            if seen is not None:
                seen.count += 1
                seen.last = now
                if now - seen.written < self.repeat_seconds:
                    return  # counted; written with the next repeat that comes after the interval
                seen.written = now
                count, name = seen.count, seen.name
            else:
                count, name = 1, ""
        try:
            if name and self._update(involved, name, count, message):
                return
            created = self._create(involved, kind, reason, message, count)
        except ApiException as exc:  # an Event is worth a try, never a failed reconcile
            log.warning("cannot post event %s on %s: %s", reason, involved.name, exc.reason)
            return
        with self._lock:
            self._seen[key] = _Seen(created, count, now, now)

    def forget(self, namespace: str, uid: str) -> None:
        """The object is gone: drop what was remembered about its Events."""
        with self._lock:
            for key in [k for k in self._seen if k[:2] == (namespace, uid)]:
                del self._seen[key]

    def _expire(self, now: float) -> None:
        for key in [k for k, seen in self._seen.items() if now - seen.last > EVENT_TTL_SECONDS]:
            del self._seen[key]

    def _create(self, involved: Involved, kind: str, reason: str, message: str, count: int) -> str:
        now = datetime.datetime.now(datetime.UTC)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{involved.name}.", "namespace": involved.namespace},
            "involvedObject": {
                "apiVersion": involved.api_version,
                "kind": involved.kind,
                "name": involved.name,
                "namespace": involved.namespace,
                "uid": involved.uid,
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": _timestamp(now),
            "lastTimestamp": _timestamp(now),
            "count": count,
        }
        created = self._core().create_namespaced_event(involved.namespace, event)  # type: ignore[arg-type]
        return str(created.metadata.name)

    def _update(self, involved: Involved, name: str, count: int, message: str) -> bool:
        """Count another occurrence on the existing Event; False when it is gone (expired, deleted)."""
        now = datetime.datetime.now(datetime.UTC)
        patch = {
            "count": count,
            "message": message,
            "lastTimestamp": _timestamp(now),
            "series": {"count": count, "lastObservedTime": _micro(now)},
        }
        try:
            self._core().patch_namespaced_event(name, involved.namespace, patch, _content_type=MERGE)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True
