"""Operator overhead: how fast the real operator turns a stage's result into the next Job.

The real `sweetspot operator` process runs against the Kubernetes API emulator the tests use (kmock) and a
throwaway PostgreSQL; an instant node answers every Job the moment it appears (watch), with a canned result in
its pod's termination message, so all the time measured is the operator's (and the API's). For N concurrent
studies (each `maxTrials` trials, proxy policy, one stage at a time) it reports:
- apply → first Job: from creating the study to its first Job;
- idle gap: from a Job's result (its Complete status written) to the study's next Job, p50 and p99;
- the operator's CPU seconds and peak RSS over the run;
- the floor: the emulator's round trip for the minimal API calls between a result and the next Job (list the
  study's Jobs, list the finished Job's pods for the result, create the ConfigMap, create the Job), p50.

    python -m benchmarks operator [--studies 1 10 100] [--trials 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import kubernetes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from sweetspot import jobs

from support.cluster import RunningCluster
from support.instant_node import InstantNode
from support.operator import GROUP, NAMESPACE, PLURAL, VERSION, Operator
from support.postgres import fresh_database, postgres_url
from support.studies import small_study

HEARTBEAT_SECONDS = "30"
"""The operator's default timer: a gap near it would mean the Job watch did not wake the study."""


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def floor(api: kubernetes.client.ApiClient, repeats: int = 50) -> float:
    """Median round trip of the four API calls the operator cannot avoid between a result and the next Job."""
    batch, core = kubernetes.client.BatchV1Api(api), kubernetes.client.CoreV1Api(api)
    labels = {jobs.LABEL_STUDY: "floor"}
    samples = []
    for i in range(repeats):
        started = time.perf_counter()
        batch.list_namespaced_job(NAMESPACE, label_selector=f"{jobs.LABEL_STUDY}=floor")
        core.list_namespaced_pod(NAMESPACE, label_selector="job-name=floor-0")
        meta = {"name": f"floor-{i}", "namespace": NAMESPACE, "labels": labels}
        core.create_namespaced_config_map(NAMESPACE, {"metadata": meta, "data": {"trial.json": "{}"}})
        container = {"name": "trainer", "image": "trainer"}
        spec = {"template": {"spec": {"containers": [container], "restartPolicy": "Never"}}}
        batch.create_namespaced_job(NAMESPACE, {"metadata": meta, "spec": spec})
        samples.append(time.perf_counter() - started)
    for i in range(repeats):
        batch.delete_namespaced_job(f"floor-{i}", NAMESPACE)
        core.delete_namespaced_config_map(f"floor-{i}", NAMESPACE)
    return statistics.median(samples)


def process_usage(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and peak RSS (MiB) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return cpu, int(status["VmHWM"].split()[0]) / 1024


def run(studies: int, trials: int, database_server: str, workdir: Path) -> dict[str, Any]:
    database = fresh_database(database_server, f"bench_{studies}_{os.getpid()}")
    with RunningCluster(workdir) as running:
        api = running.client()
        floor_seconds = floor(api)
        objects = kubernetes.client.CustomObjectsApi(api)
        operator = Operator(running, database, workdir)
        operator.env["SWEETSPOT_RECONCILE_SECONDS"] = HEARTBEAT_SECONDS
        operator.env["SWEETSPOT_WORKERS"] = os.environ.get("SWEETSPOT_WORKERS", "8")
        with InstantNode(api) as node:
            operator.start()
            assert operator.process is not None
            time.sleep(3)  # the operator's start-up (imports, storage schema) is not what is measured
            harness_before = process_usage(os.getpid())[0]
            applied: dict[str, float] = {}
            started = time.monotonic()
            for i in range(studies):
                name = f"bench-{i:03d}"
                manifest = small_study(name, NAMESPACE, maxTrials=trials, parallelism=1, seed=i)
                manifest["spec"]["trial"] = {"image": "sweetspot-trainer:bench"}
                applied[name] = time.monotonic()
                objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, manifest)
            deadline = time.monotonic() + 120 + 2 * studies * trials
            while True:
                items = objects.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
                phases = [(item.get("status") or {}).get("phase") for item in items]
                if all(p in ("Succeeded", "Failed") for p in phases):
                    break
                if time.monotonic() > deadline:  # report what finished; the table says how many did not
                    break
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            cpu, rss = process_usage(operator.process.pid)
            harness = process_usage(os.getpid())[0] - harness_before
            operator.stop()
        if node.errors:
            raise RuntimeError(f"the instant node failed: {node.errors[:3]}")

    by_study: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for name, (study, seen) in node.created.items():
        by_study[study].append((seen, name))
    first_job = [min(by_study[s])[0] - applied[s] for s in applied if by_study[s]]
    gaps = []
    for study, done in node.completed.values():
        later = [seen for seen, _ in by_study[study] if seen > done]
        if later:
            gaps.append(min(later) - done)
    failed = sum(1 for p in phases if p != "Succeeded")  # failed or unfinished at the deadline
    return {
        "studies": studies,
        "trials": trials,
        "jobs": len(node.created),
        "failedStudies": failed,
        "firstJobP50": percentile(first_job, 0.5),
        "firstJobP99": percentile(first_job, 0.99),
        "gapP50": percentile(gaps, 0.5),
        "gapP99": percentile(gaps, 0.99),
        "floor": floor_seconds,
        "cpuSeconds": cpu,
        "emulatorCpuSeconds": harness,
        "peakRssMiB": rss,
        "seconds": elapsed,
    }


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'studies':>8}{'jobs':>7}{'first Job p50':>15}{'p99':>8}{'idle gap p50':>14}{'p99':>8}"
        f"{'floor':>8}{'p99/floor':>10}{'CPU s':>8}{'peak RSS':>10}{'wall s':>8}{'API CPU s':>11}{'unfinished':>12}",
    ]
    for r in rows:
        lines.append(
            f"{r['studies']:>8}{r['jobs']:>7}{r['firstJobP50'] * 1000:>13.0f}ms{r['firstJobP99'] * 1000:>6.0f}ms"
            f"{r['gapP50'] * 1000:>12.0f}ms{r['gapP99'] * 1000:>6.0f}ms{r['floor'] * 1000:>6.0f}ms"
            f"{r['gapP99'] / r['floor']:>10.1f}{r['cpuSeconds']:>8.1f}{r['peakRssMiB']:>7.0f}MiB{r['seconds']:>8.0f}"
            f"{r['emulatorCpuSeconds']:>11.1f}{r['failedStudies']:>12}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks operator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, nargs="+", default=[1, 10, 100], help="concurrent studies per run")
    parser.add_argument("--trials", type=int, default=4, help="maxTrials of each study (default: 4)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--workdir", type=Path, help="keep the operator's logs here (default: a temporary directory)")
    args = parser.parse_args(argv)
    rows = []
    with postgres_url() as server, tempfile.TemporaryDirectory(prefix="sweetspot-bench-") as directory:
        for count in args.studies:
            workdir = (args.workdir or Path(directory)) / f"n{count}"
            workdir.mkdir(parents=True)
            rows.append(run(count, args.trials, server, workdir))
            print(f"  {count} studies done in {rows[-1]['seconds']:.0f}s", file=sys.stderr, flush=True)
    print(
        f"Operator overhead: proxy studies of {args.trials} trials, one stage at a time, instant Jobs; "
        f"{os.cpu_count()} CPU cores shared by the operator, the emulator and PostgreSQL"
    )
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
