"""Cluster benchmarks with real processes: nats-server(s), ``riverrun worker``s, a client.

Everything runs on this machine: the bench starts the nats-server processes, starts the
workers as ``python -m riverrun ... worker bench/cluster_workflows.py`` subprocesses (the
workflow ``five``: five steps, each recording the pid that ran it and when), and is itself the
client. It prints, in one run:

  W3  N workflows x 5 steps started at once, hosted by 1 and by 2 worker processes, side by
      side with the raw floor measured in the same run on the same server (N concurrent raw
      appenders each doing the fenced appends one workflow needs), as ratios
  F   failover: SIGKILL one of two workers during W3; every result is checked; the time from
      the kill to the first step the survivor ran for a workflow the killed worker had hosted,
      against the target lease TTL + 2 s
  C   a 3-node cluster (three nats-server processes, R3 streams): SIGKILL the events stream's
      leader during W3; every result is checked; the longest gap between consecutive steps
      around the kill (the unavailability)

Completion times come from the run records (``completed_at``, written by the worker), not
from when the client noticed, so the client's polling does not count.

Usage: python bench/cluster.py [--quick] [--workflows N] [--lease-ttl SECONDS]
       [--step-delay S] [--worker-arg ARG ...] [--keep-logs] [--skip-failover] [--skip-cluster]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import nats

from riverrun import Runtime, RuntimeOptions
from riverrun.persistence._embedded import EmbeddedNatsServer, find_nats_server
from riverrun.persistence._jetstream_names import Names

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from cluster_workflows import STEPS, five  # noqa: E402
from workflows import raw_concurrent_baseline  # noqa: E402

#: appends one W3 workflow needs: workflow.started, one per step, workflow.completed
APPENDS_PER_WORKFLOW = STEPS + 2
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- processes ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class WorkerProcess:
    """One ``riverrun worker`` subprocess, its stderr in a log file."""

    def __init__(self, servers: Sequence[str], namespace: str, log_dir: Path,
                 replicas: int = 1, extra: Sequence[str] = ()) -> None:
        self.log = log_dir / f"worker-{namespace}-{uuid.uuid4().hex[:6]}.log"
        args = [sys.executable, "-m", "riverrun", "--servers", ",".join(servers),
                "--namespace", namespace, "--replicas", str(replicas), "worker",
                "bench/cluster_workflows.py", "--log-level", "warning", *extra]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=out)
        self.pid = self.process.pid

    def wait_hosting(self, timeout: float = 60.0) -> None:
        """Until the worker says it hosts its workflows (bounded polling)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.pid} exited:\n{self.tail()}")
            if "hosting" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"worker {self.pid} never said it was hosting:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextlib.contextmanager
def workers(count: int, servers: Sequence[str], namespace: str, log_dir: Path,
            replicas: int = 1, extra: Sequence[str] = ()) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    try:
        for _ in range(count):
            started.append(WorkerProcess(servers, namespace, log_dir, replicas, extra))
        for worker in started:
            worker.wait_hosting()
        yield started
    finally:
        for worker in started:
            worker.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Cluster:
    """Three nats-server processes routed into one JetStream cluster (sync every write)."""

    NODES = ("n1", "n2", "n3")

    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}
        self.monitors: dict[str, str] = {}

    def start(self) -> list[str]:
        binary = str(find_nats_server())
        routes = {node: free_port() for node in self.NODES}
        route_list = "\n".join(f"    nats-route://127.0.0.1:{p}" for p in routes.values())
        for node in self.NODES:
            ports = self.root / f"{node}-ports"
            ports.mkdir()
            config = self.root / f"{node}.conf"
            config.write_text(
                f"server_name: {node}\nlisten: 127.0.0.1:-1\nhttp: 127.0.0.1:-1\n"
                f'ports_file_dir: "{ports}"\n'
                f'jetstream {{\n  store_dir: "{self.root / node}"\n  sync_interval: always\n}}\n'
                f"cluster {{\n  name: bench\n  listen: 127.0.0.1:{routes[node]}\n"
                f"  no_advertise: true\n  routes: [\n{route_list}\n  ]\n}}\n"
            )
            with (self.root / f"{node}.log").open("wb") as out:
                self.processes[node] = subprocess.Popen(
                    [binary, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT
                )
        for node, process in self.processes.items():
            found = self._ports(node, process)
            self.urls[node] = found["nats"][0]
            self.monitors[node] = found["monitoring"][0]
        for node, process in self.processes.items():
            self._wait_healthy(node, process)
        return list(self.urls.values())

    def _ports(self, node: str, process: subprocess.Popen[bytes]) -> dict[str, Any]:
        for _ in range(400):
            if process.poll() is not None:
                raise RuntimeError(f"nats-server {node} exited: {self._log(node)}")
            for path in (self.root / f"{node}-ports").glob(f"*_{process.pid}.ports"):
                with contextlib.suppress(ValueError):
                    found: dict[str, Any] = json.loads(path.read_text())
                    return found
            time.sleep(0.05)
        raise RuntimeError(f"nats-server {node} wrote no ports file: {self._log(node)}")

    def _wait_healthy(self, node: str, process: subprocess.Popen[bytes]) -> None:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"nats-server {node} exited: {self._log(node)}")
            url = f"{self.monitors[node]}/healthz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"nats-server {node} never became healthy: {self._log(node)}")

    def _log(self, node: str) -> str:
        return (self.root / f"{node}.log").read_text(errors="replace")[-2000:]

    def kill(self, node: str) -> None:
        self.processes[node].send_signal(signal.SIGKILL)
        self.processes[node].wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)


# -- the workload -----------------------------------------------------------------------------


class W3Result:
    """What one W3 round left: per workflow its result and its run's end time."""

    def __init__(self, started_at: float, results: dict[str, Any], ended: dict[str, float],
                 count: int, base: int) -> None:
        self.started_at = started_at
        self.results = results
        self.ended = ended
        self.count = count
        self.base = base

    @property
    def elapsed(self) -> float:
        return max(self.ended.values()) - self.started_at

    def wrong(self) -> list[str]:
        """Workflows whose result is not what their input says (or that have none)."""
        bad = []
        for i in range(self.count):
            got = self.results.get(f"{self.base}-{i}")
            if (not isinstance(got, dict) or got.get("value") != i + STEPS
                    or len(got.get("marks", ())) != STEPS):
                bad.append(f"{self.base}-{i}")
        return bad

    def marks(self) -> dict[str, list[tuple[int, float]]]:
        return {wid: [(int(p), float(t)) for p, t in r["marks"]]
                for wid, r in self.results.items() if isinstance(r, dict)}


async def start_all(rt: Runtime, count: int, delay: float, tag: int) -> tuple[float, list[Any]]:
    """Start ``count`` workflows at once; the wall-clock start time and their handles."""
    handles: list[Any] = []

    async def start_one(i: int) -> None:
        handles.append(await rt.client.start(five, i, delay, workflow_id=f"{tag}-{i}"))

    started_at = time.time()
    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(start_one, i)
    return started_at, handles


async def collect(handles: list[Any], started_at: float, count: int, tag: int,
                  timeout: float) -> W3Result:
    """Every result, awaited one after the other (so one handle polls the store at a time),
    and every run's ``completed_at``."""
    results: dict[str, Any] = {}
    ended: dict[str, float] = {}
    with anyio.fail_after(timeout):
        for handle in handles:
            while True:
                try:
                    results[handle.workflow_id] = await handle.result()
                    run = await handle.describe()
                    break
                except ConnectionError:  # StoreUnavailable: a server was just killed
                    await anyio.sleep(0.2)
            ended[handle.workflow_id] = run.completed_at.timestamp()
    return W3Result(started_at, results, ended, count, tag)


async def warm_up(rt: Runtime, procs: Sequence[WorkerProcess], timeout: float = 60.0) -> None:
    """Workflows through the workers until every one of them has run a step (imports,
    connections; partitions balanced over all of them), or ``timeout``."""
    seen: set[int] = set()
    with anyio.move_on_after(timeout):
        while not {p.pid for p in procs} <= seen:
            _, handles = await start_all(rt, 8 * len(procs), 0.0, int(time.time() * 1e6))
            for h in handles:
                seen.update(pid for pid, _ in (await h.result())["marks"])
    missing = [p.pid for p in procs if p.pid not in seen]
    if missing:
        print(f"    (warm-up: workers {missing} ran no step within {timeout:.0f}s)")


async def w3_round(servers: Sequence[str], count: int, n_workers: int, log_dir: Path,
                   extra: Sequence[str]) -> tuple[W3Result, float]:
    """W3 on ``n_workers`` fresh worker processes in a fresh namespace; the result and the
    workers' CPU seconds spent during it."""
    namespace = f"w3-{n_workers}-{uuid.uuid4().hex[:6]}"
    async with Runtime.connect(list(servers), namespace=namespace, worker=False,
                               workflows=[five]) as rt:
        with workers(n_workers, servers, namespace, log_dir, extra=extra) as procs:
            await warm_up(rt, procs)
            cpu0 = sum(cpu_seconds(p.pid) for p in procs)
            started_at, handles = await start_all(rt, count, 0.0, 1)
            result = await collect(handles, started_at, count, 1, timeout=600)
            cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
    return result, cpu


# -- scenarios ---------------------------------------------------------------------------------


async def bench_w3(url: str, count: int, log_dir: Path, extra: Sequence[str]) -> None:
    raw = await raw_concurrent_baseline(url, count, APPENDS_PER_WORKFLOW)
    one, cpu_one = await w3_round([url], count, 1, log_dir, extra)
    two, cpu_two = await w3_round([url], count, 2, log_dir, extra)
    # the floor again after the rounds, best of both: the machine's noise hits both sides
    raw = min(raw, await raw_concurrent_baseline(url, count, APPENDS_PER_WORKFLOW))
    raw_rate = count / raw
    for name, r in (("1 worker", one), ("2 workers", two)):
        if r.wrong():
            print(f"W3 {name}: WRONG results for {len(r.wrong())} workflows: {r.wrong()[:5]}")
    rate1, rate2 = count / one.elapsed, count / two.elapsed
    print(f"W3: {count} workflows x {STEPS} steps at once, single server (sync always), "
          f"raw floor = {count} concurrent appenders x {APPENDS_PER_WORKFLOW} fenced appends "
          f"({raw:.3f}s = {raw_rate:.0f} workflows/s, best of one before and one after)")
    print(f"    {'':10} {'seconds':>8} {'wf/s':>7} {'x raw floor':>12} {'worker CPU/wf':>14}")
    for name, r, rate, cpu in (("1 worker", one, rate1, cpu_one),
                               ("2 workers", two, rate2, cpu_two)):
        print(f"    {name:10} {r.elapsed:8.3f} {rate:7.0f} {rate / raw_rate:11.2f}x "
              f"{cpu / count * 1e3:11.2f} ms")
    print(f"    2 workers / 1 worker throughput: {rate2 / rate1:.2f}x; 1 worker: "
          f"{rate1 / raw_rate:.2f}x raw floor (target >= 0.60x), worker CPU "
          f"{cpu_one / count * 1e3:.2f} ms per workflow (target <= 1.0 ms)")


async def bench_failover(url: str, count: int, delay: float, ttl: float, log_dir: Path,
                         extra: Sequence[str]) -> None:
    namespace = f"failover-{uuid.uuid4().hex[:6]}"
    async with Runtime.connect([url], namespace=namespace, worker=False,
                               workflows=[five]) as rt:
        with workers(2, [url], namespace, log_dir, extra=extra) as procs:
            await warm_up(rt, procs)
            victim, survivor = procs
            started_at, handles = await start_all(rt, count, delay, 2)
            # mid-flight: about two of the five steps of each workflow are done
            await anyio.sleep(2.5 * delay)
            killed_at = time.time()
            victim.kill()
            result = await collect(handles, started_at, count, 2, timeout=max(600, 10 * ttl))
    wrong = result.wrong()
    marks = result.marks()
    orphans = {wid: m for wid, m in marks.items()
               if any(p == victim.pid for p, _ in m) and m[-1][0] == survivor.pid}
    by_victim = sum(1 for m in marks.values() if m[-1][0] == victim.pid)
    print(f"F: failover, {count} workflows x {STEPS} steps ({delay * 1e3:.0f} ms each) on 2 "
          f"workers, one SIGKILLed {killed_at - started_at:.2f}s after the starts: "
          f"{count - len(wrong)}/{count} results correct"
          + (f" (WRONG: {wrong[:5]})" if wrong else ""))
    target = ttl + 2.0
    if not orphans:
        print(f"    no workflow was orphaned mid-way ({by_victim} finished on the killed "
              f"worker before the kill); no failover time to report")
        return
    resumed = min(t for m in orphans.values() for p, t in m if p == survivor.pid and t > killed_at)
    print(f"    {len(orphans)} workflows orphaned mid-way, all finished by the survivor "
          f"({by_victim} had finished on the killed worker); "
          f"kill -> first resumed step: {resumed - killed_at:.2f}s vs target lease TTL + 2 s "
          f"= {target:.1f}s: {(resumed - killed_at) / target:.2f}x; all done "
          f"{result.elapsed - (killed_at - started_at):.2f}s after the kill")


async def bench_cluster(count: int, delay: float, log_dir: Path, extra: Sequence[str]) -> None:
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="cluster-", dir=log_dir)))
    try:
        urls = cluster.start()
        namespace = f"cluster-{uuid.uuid4().hex[:6]}"
        async with Runtime.connect(urls, namespace=namespace, worker=False, replicas=3,
                                   workflows=[five]) as rt:
            with workers(1, urls, namespace, log_dir, replicas=3, extra=extra) as procs:
                await warm_up(rt, procs)
                stream = Names(namespace).events_stream
                nc = await nats.connect(urls)
                try:
                    leader = (await nc.jetstream().stream_info(stream)).cluster.leader
                finally:
                    await nc.close()
                started_at, handles = await start_all(rt, count, delay, 3)
                await anyio.sleep(2.5 * delay)
                killed_at = time.time()
                cluster.kill(leader)
                result = await collect(handles, started_at, count, 3, timeout=600)
    finally:
        cluster.stop()
    wrong = result.wrong()
    times = sorted([t for m in result.marks().values() for _, t in m]
                   + list(result.ended.values()))
    # the longest pause between two consecutive recorded steps/ends from just before the kill
    around = [t for t in times if t >= killed_at - 1.0]
    gaps = [(b - a, a) for a, b in itertools.pairwise(around)]
    gap, gap_at = max(gaps, default=(0.0, killed_at))
    before = [b - a for a, b in itertools.pairwise(times) if b < killed_at]
    normal = max(before, default=0.0)
    print(f"C: 3-node cluster (R3, sync always), {count} workflows x {STEPS} steps "
          f"({delay * 1e3:.0f} ms each), 1 worker; SIGKILLed the events stream's leader "
          f"({leader}) {killed_at - started_at:.2f}s after the starts: "
          f"{count - len(wrong)}/{count} results correct"
          + (f" (WRONG: {wrong[:5]})" if wrong else " (nothing lost)"))
    print(f"    unavailability (longest gap between consecutive completed steps around the "
          f"kill): {gap:.2f}s, starting {gap_at - killed_at:+.2f}s from the kill "
          f"({gap / normal:.0f}x the longest gap before it, {normal * 1e3:.0f} ms); "
          f"all done {result.elapsed - (killed_at - started_at):.2f}s after the kill")


async def main(ns: argparse.Namespace) -> None:
    count = ns.workflows or (100 if ns.quick else 500)
    default_ttl = getattr(RuntimeOptions(), "lease_ttl", None)
    if ns.lease_ttl is None and default_ttl is None:
        raise SystemExit("RuntimeOptions has no lease_ttl: give the workers' one with --lease-ttl")
    ttl = ns.lease_ttl if ns.lease_ttl is not None else default_ttl.total_seconds()
    log_dir = Path(tempfile.mkdtemp(prefix="riverrun-cluster-bench-"))
    began = time.monotonic()
    print(f"bench/cluster.py: {count} workflows per round, lease TTL {ttl:g}s, logs in {log_dir}")
    server = EmbeddedNatsServer(data_dir=log_dir / "single")  # the embedded default: sync always
    server.start()
    try:
        await bench_w3(server.url, count, log_dir, ns.worker_arg)
        if not ns.skip_failover:
            await bench_failover(server.url, count, ns.step_delay, ttl, log_dir, ns.worker_arg)
    finally:
        server.stop()
    if not ns.skip_cluster:
        await bench_cluster(count, ns.step_delay, log_dir, ns.worker_arg)
    print(f"total {time.monotonic() - began:.0f}s")
    if not ns.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 workflows instead of 500")
    parser.add_argument("--workflows", type=int, default=None, help="workflows per round")
    parser.add_argument("--step-delay", type=float, default=0.2,
                        help="seconds each step sleeps in the failover and cluster rounds, "
                             "so that the kill lands mid-flight (default 0.2)")
    parser.add_argument("--lease-ttl", type=float, default=None,
                        help="the workers' lease TTL in seconds, for the failover target "
                             "(default: RuntimeOptions().lease_ttl); pass the matching worker "
                             "flag with --worker-arg if you change it")
    parser.add_argument("--worker-arg", action="append", default=[],
                        help="an extra argument for every `riverrun worker` (repeatable)")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the servers' data and the workers' logs (kept anyway "
                             "when the bench fails)")
    parser.add_argument("--skip-failover", action="store_true")
    parser.add_argument("--skip-cluster", action="store_true")
    anyio.run(main, parser.parse_args())
