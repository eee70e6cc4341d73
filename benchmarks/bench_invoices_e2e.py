"""End to end: the `<biller>__invoices` DAG on an initial data dump, under a real Airflow.

    python benchmarks/bench_invoices_e2e.py [--bills 1000000] [--workdir DIR] [--keep] [--save FILE]

Starts the simulators (FTPS, Invoice Cloud, ...) and `airflow standalone` as the demo does
(icbsim.local_airflow, LocalExecutor: the task runs in Airflow's own task process), generates the
file (or reuses the one bench_map.py left in the workdir with the same bill count), drops it
into the demo biller's FTPS inbox, triggers `demo_aus__invoices` and waits for the run.

Prints, from the task's own figures (its XCom `seconds`) and the Airflow API:
  stages     wall time of download (FTPS, TLS), map (map + check + write of every part),
             upload (UploadInvoiceFile of every part, base64 in SOAP over HTTP, answered by
             the IC simulator once it has checked and stored the part) and archive
  task       the upload_file task instance's duration; the DAG run's
  memory     peak RSS summed over the task's process tree (the task process, the forkserver
             and its workers), sampled every 0.2 s; and the same for the whole Airflow tree

Target (issue 14): the whole task within 1.5x of download + map. Exits 0 whatever the
outcome (a report), 1 when the run did not succeed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from icbsim.demo import DEMO_BILLER
from icbsim.local_airflow import (
    ADMIN,
    Api,
    airflow_env,
    free_port,
    read_admin_password,
    start_airflow,
    trigger,
    unpause,
    wait_for_dag,
    wait_for_run,
    wait_healthy,
)
from icbsim.stack import SimStack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_map import ensure_file  # noqa: E402 - the benchmarks folder is not a package

DAG = f"{DEMO_BILLER}__invoices"
TARGET = 1.5  # task / (download + map)
SAMPLE_S = 0.2


class _Memory:
    """Peak RSS of the Airflow tree, and of the task's tree (the process whose child is the
    forkserver, with its descendants; before the forkserver starts, the process running
    the upload_file task, found by its command line)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_all = self.peak_task = 0
        self.task_pid: int | None = None
        self.peaks: dict[int, tuple[int, str]] = {}  # pid -> (peak RSS, command line)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                root = psutil.Process(self.root)
                tree = [root, *root.children(recursive=True)]
                rss = {}
                for p in tree:
                    try:
                        rss[p.pid] = p.memory_info().rss
                        if rss[p.pid] > self.peaks.get(p.pid, (0, ""))[0]:
                            self.peaks[p.pid] = (rss[p.pid], " ".join(p.cmdline())[:100])
                        if self.task_pid is None and "upload_file" in " ".join(p.cmdline()):
                            self.task_pid = p.pid
                        if "multiprocessing.forkserver" in " ".join(p.cmdline()):
                            self.task_pid = p.ppid()
                    except psutil.NoSuchProcess:
                        continue
                self.peak_all = max(self.peak_all, sum(rss.values()))
                if self.task_pid in rss:
                    task = psutil.Process(self.task_pid)
                    pids = [self.task_pid, *(c.pid for c in task.children(recursive=True))]
                    self.peak_task = max(self.peak_task, sum(rss.get(pid, 0) for pid in pids))
            except psutil.NoSuchProcess:
                pass
            self.done.wait(SAMPLE_S)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bills", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/icbridge-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the generated file and the Airflow home")
    ap.add_argument("--save", type=Path, metavar="FILE", help="also write the figures as JSON to FILE")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args(argv)

    source, reused, gen_s = ensure_file(args.workdir, args.bills)
    print(f"input: {source} ({source.stat().st_size:,} bytes, {args.bills:,} bills) "
          + ("reused" if reused else f"generated in {gen_s:.1f} s"), flush=True)
    home = Path(tempfile.mkdtemp(prefix="icb-e2e-"))
    stack = SimStack(home / "sim").start()
    airflow = None
    try:
        port = free_port()
        env, _ = airflow_env(home, home / "airflow", port, stack, None)
        airflow = start_airflow(env, home / "airflow", port)
        deadline = time.monotonic() + args.timeout
        api = Api(airflow.url)
        wait_healthy(api, airflow, deadline)
        api.login(ADMIN, read_admin_password(home / "airflow", deadline))
        wait_for_dag(api, DAG, airflow, deadline)
        unpause(api, DAG, deadline)
        name = f"{stack.access(DEMO_BILLER).biller.bid}_{datetime.now():%Y%m%d%H%M%S}_UB.TXT"
        stack.drop_file(DEMO_BILLER, source, name)
        memory = _Memory(airflow.process.pid)
        memory.thread.start()
        started = time.monotonic()
        run_id = trigger(api, DAG)
        print(f"triggered {DAG} run {run_id} for {name}", flush=True)
        state = wait_for_run(api, DAG, run_id, deadline)
        run_s = time.monotonic() - started
        memory.done.set()
        memory.thread.join()
        tis = api.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances")["task_instances"]
        upload = next(ti for ti in tis if ti["task_id"] == "upload_file")
        xcom = api.call(
            "GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/upload_file/xcomEntries/return_value",
            params={"map_index": upload["map_index"], "deserialize": True},
        )
        outcome = xcom["value"]
        outcome = json.loads(outcome) if isinstance(outcome, str) else outcome
        seconds = outcome["seconds"]
        parts = outcome["summary"]["bifs"]
        received = stack.ic.uploads()
        report = {
            "bills": args.bills,
            "file_bytes": source.stat().st_size,
            "state": state,
            "stages_s": seconds,
            "task_s": upload["duration"],
            "run_s": run_s,
            "parts": len(parts),
            "part_bytes_max": max((u["size"] for u in received), default=0),
            "invoices_received": sum(u["invoices"] for u in received if u["success"]),
            "peak_rss_task_tree": memory.peak_task,
            "peak_rss_airflow_tree": memory.peak_all,
            "peak_rss_largest_processes": sorted(memory.peaks.values(), reverse=True)[:6],
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        base = seconds.get("download", 0) + seconds.get("map", 0)
        report["ratio"] = upload["duration"] / base if base else None
        print()
        print(f"{args.bills:,} bills, {report['file_bytes'] / 1e6:,.0f} MB: run {state} in {run_s:.1f} s")
        for stage, s in seconds.items():
            print(f"  {stage:<9}{s:>8.1f} s")
        print(f"  task     {upload['duration']:>8.1f} s  (upload_file task instance)")
        print(f"  parts: {len(parts)}, largest {report['part_bytes_max'] / 2**20:.1f} MiB; "
              f"IC received {report['invoices_received']:,} invoices")
        print(f"peak RSS: task tree {memory.peak_task / 1e6:,.0f} MB, "
              f"whole Airflow tree {memory.peak_all / 1e6:,.0f} MB; largest processes:")
        for peak, cmdline in report["peak_rss_largest_processes"]:
            print(f"  {peak / 1e6:>7,.0f} MB  {cmdline}")
        if report["ratio"] is not None:
            verdict = "PASS" if report["ratio"] <= TARGET else "MISS"
            print(f"task / (download + map) = {report['ratio']:.2f}x  (target <= {TARGET}x)  {verdict}")
        if args.save:
            args.save.write_text(json.dumps(report, indent=2))
        return 0 if state == "success" else 1
    finally:
        if airflow is not None:
            airflow.stop()
        stack.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
            if not reused:
                source.unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
