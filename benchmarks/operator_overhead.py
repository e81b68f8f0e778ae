"""Operator overhead: how fast the real operator turns a stage's result into the next Job.

The real `sweetspot operator` process runs against the Kubernetes API emulator the tests use (kmock) and a
throwaway PostgreSQL; an instant node answers every Job the moment it appears (watch), with a canned result in
its pod's termination message, so all the time measured is the operator's (and the API's). For N concurrent
studies (each `maxTrials` trials, proxy policy, one stage at a time) it reports:
- apply → first Job: from creating the study to its first Job;
- idle gap: from a Job's result (its Complete status written) to the study's next Job, p50 and p99;
- the operator's CPU seconds and peak RSS over the run;
- the floor: the emulator's round trip for the minimal API calls between a result and the next Job (list the
  study's Jobs, list the finished Job's pods for the result, create the ConfigMap, create the Job), p50;
- with `--unrelated-jobs N`, each run again with N Jobs of someone else in the namespace (a third running, a third
  complete, a third failed, the running ones finishing during the run): what they cost the operator (its start-up
  CPU until it watches Jobs, its CPU per stage after that, its peak RSS). The operator asks the API server for its
  own Jobs only, so they should cost nothing; the emulator also counts the unrelated Jobs that reached it.

    python -m benchmarks operator [--studies 1 10 100] [--trials 4] [--unrelated-jobs 0 5000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import kubernetes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from sweetspot.cluster import jobs

from support.emulator import MERGE, RunningCluster
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


UNRELATED_TEMPLATE = {
    "template": {"spec": {"containers": [{"name": "build", "image": "ci"}], "restartPolicy": "Never"}}
}
CHURN_PER_SECOND = 20
"""How fast the unrelated running Jobs finish during a run (a busy CI namespace): watch events about them."""


def seed_unrelated(batch: kubernetes.client.BatchV1Api, count: int) -> list[str]:
    """`count` Jobs of someone else: a third complete, a third failed, a third running (returned, to finish later)."""
    running = []
    for i in range(count):
        name = f"ci-{i:05d}"
        labels = {"app": "ci", "pipeline": str(i % 97)}
        body = {"metadata": {"name": name, "labels": labels}, "spec": UNRELATED_TEMPLATE}
        batch.create_namespaced_job(NAMESPACE, body, _preload_content=False)
        if i % 3 == 2:
            running.append(name)
            continue
        kind = "Complete" if i % 3 == 0 else "Failed"
        status = {"status": {"conditions": [{"type": kind, "status": "True", "reason": kind, "message": ""}]}}
        batch.patch_namespaced_job_status(name, NAMESPACE, status, _preload_content=False, **MERGE)
    return running


def churn(batch: kubernetes.client.BatchV1Api, names: list[str], stop: threading.Event) -> None:
    """Finish the unrelated running Jobs at `CHURN_PER_SECOND` until stopped."""
    condition = {"type": "Complete", "status": "True", "reason": "Completed", "message": ""}
    for name in names:
        if stop.wait(1 / CHURN_PER_SECOND):
            return
        batch.patch_namespaced_job_status(
            name, NAMESPACE, {"status": {"conditions": [condition]}}, _preload_content=False, **MERGE
        )


def watching_jobs(running: RunningCluster) -> bool:
    """Whether the operator has started its watch of Jobs (its start-up, initial listing included, is over)."""
    return any(c == "operator" and v == "watch" and p == "jobs" for c, v, p, _ in list(running.emulator.reads))


def run(studies: int, trials: int, database_server: str, workdir: Path, unrelated: int = 0) -> dict[str, Any]:
    database = fresh_database(database_server, f"bench_{studies}_{unrelated}_{os.getpid()}")
    with RunningCluster(workdir) as running:
        api = running.client()
        floor_seconds = floor(api)
        objects = kubernetes.client.CustomObjectsApi(api)
        batch = kubernetes.client.BatchV1Api(api)
        unfinished = seed_unrelated(batch, unrelated)
        operator = Operator(running, database, workdir)
        operator.env["SWEETSPOT_RECONCILE_SECONDS"] = HEARTBEAT_SECONDS
        operator.env["SWEETSPOT_WORKERS"] = os.environ.get("SWEETSPOT_WORKERS", "8")
        stop_churn = threading.Event()
        with InstantNode(api) as node:
            operator.start()
            assert operator.process is not None
            deadline = time.monotonic() + 120
            while not watching_jobs(running) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1)  # its first pass over the (still empty) list of studies
            startup_cpu, _ = process_usage(operator.process.pid)
            churner = threading.Thread(target=churn, args=(batch, unfinished, stop_churn), daemon=True)
            churner.start()
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
            stop_churn.set()
            churner.join()
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
    reached = {name for (client, plural, name) in running.emulator.served if client == "operator" and plural == "jobs"}
    return {
        "studies": studies,
        "trials": trials,
        "unrelatedJobs": unrelated,
        "unrelatedJobsReceived": sum(1 for name in reached if name.startswith("ci-")),
        "jobs": len(node.created),
        "failedStudies": failed,
        "firstJobP50": percentile(first_job, 0.5),
        "firstJobP99": percentile(first_job, 0.99),
        "gapP50": percentile(gaps, 0.5),
        "gapP99": percentile(gaps, 0.99),
        "floor": floor_seconds,
        "cpuSeconds": cpu,
        "startupCpuSeconds": startup_cpu,
        "cpuPerStageMs": (cpu - startup_cpu) * 1000 / max(1, len(node.created)),
        "emulatorCpuSeconds": harness,
        "peakRssMiB": rss,
        "seconds": elapsed,
    }


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'studies':>8}{'other Jobs':>11}{'jobs':>7}{'first Job p50':>15}{'p99':>8}{'idle gap p50':>14}{'p99':>8}"
        f"{'floor':>8}{'CPU s':>7}{'start-up':>9}{'per stage':>10}{'peak RSS':>10}{'wall s':>8}{'API CPU s':>11}"
        f"{'unfinished':>11}{'others in':>10}",
    ]
    for r in rows:
        lines.append(
            f"{r['studies']:>8}{r['unrelatedJobs']:>11}{r['jobs']:>7}{r['firstJobP50'] * 1000:>13.0f}ms"
            f"{r['firstJobP99'] * 1000:>6.0f}ms{r['gapP50'] * 1000:>12.0f}ms{r['gapP99'] * 1000:>6.0f}ms"
            f"{r['floor'] * 1000:>6.0f}ms{r['cpuSeconds']:>7.1f}{r['startupCpuSeconds']:>8.1f}s"
            f"{r['cpuPerStageMs']:>8.0f}ms{r['peakRssMiB']:>7.0f}MiB{r['seconds']:>8.0f}{r['emulatorCpuSeconds']:>11.1f}"
            f"{r['failedStudies']:>11}{r['unrelatedJobsReceived']:>10}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks operator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, nargs="+", default=[1, 10, 100], help="concurrent studies per run")
    parser.add_argument("--trials", type=int, default=4, help="maxTrials of each study (default: 4)")
    parser.add_argument(
        "--unrelated-jobs",
        type=int,
        nargs="+",
        default=[0, 5000],
        help="Jobs of someone else in the namespace; each study count runs once per value (default: 0 5000)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--workdir", type=Path, help="keep the operator's logs here (default: a temporary directory)")
    args = parser.parse_args(argv)
    rows = []
    with postgres_url() as server, tempfile.TemporaryDirectory(prefix="sweetspot-bench-") as directory:
        for count in args.studies:
            for unrelated in args.unrelated_jobs:
                workdir = (args.workdir or Path(directory)) / f"n{count}-u{unrelated}"
                workdir.mkdir(parents=True)
                rows.append(run(count, args.trials, server, workdir, unrelated))
                print(
                    f"  {count} studies with {unrelated} other Jobs done in {rows[-1]['seconds']:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
    print(
        f"Operator overhead: proxy studies of {args.trials} trials, one stage at a time, instant Jobs "
        f"(CPU per stage: after start-up, over the study Jobs); "
        f"{os.cpu_count()} CPU cores shared by the operator, the emulator and PostgreSQL"
    )
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
