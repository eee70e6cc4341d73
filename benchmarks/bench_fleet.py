"""The fleet's DAG parsing: per-file, whole fleet, and what a task start pays.

    python benchmarks/bench_fleet.py [--billers 500,2000,3000]

For each size, generates that many biller files (inHance, AUS and Logis in turn, copies of
the demo billers with their own ids and BIDs), points ICBRIDGE_BILLERS_DIR at them and, in a
fresh process each (what a dag-processor or a task runner does), times with Airflow's own
DagBag:

* every DAG file of dags/ alone (dags/billers_NN.py): the slowest and the median, against
  the target of 5 s and Airflow's 30 s dagbag_import_timeout;
* the whole folder (every file, one after another);
* a task start: the DagBag of the task's one file with the task's parsing context
  (``_AIRFLOW_PARSING_CONTEXT_DAG_ID``, as Airflow's task runner sets it), against the same
  with a fleet of one biller (target: within 1.5x).

Prints one table row per size; docs/benchmarks.md keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KINDS = ["demo_inhance", "demo_aus", "demo_logis"]  # the first, the task-start target, has payments

CHILD = """
import json, os, sys, time
from pathlib import Path
from airflow.dag_processing.dagbag import DagBag
mode, target = sys.argv[1], sys.argv[2]
out = {}
if mode == "files":
    for path in sorted(Path(target).glob("billers_*.py")):
        t = time.perf_counter(); bag = DagBag(dag_folder=str(path)); out[path.name] = [time.perf_counter() - t,
                                                                                          len(bag.dags),
                                                                                          len(bag.import_errors)]
elif mode == "folder":
    t = time.perf_counter(); bag = DagBag(dag_folder=target); out = [time.perf_counter() - t, len(bag.dags)]
else:  # task: the parsing context names one DAG
    os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = mode
    t = time.perf_counter(); bag = DagBag(dag_folder=target); out = [time.perf_counter() - t, list(bag.dags)]
print(json.dumps(out))
"""


def _make(folder: Path, n: int) -> list[str]:
    ids = []
    for i in range(n):
        kind = KINDS[i % 3]
        biller_id = f"bench_{i:04d}"
        text = (REPO / "include" / "billers" / f"{kind}.yaml").read_text()
        text = text.replace(f"biller_id: {kind}", f"biller_id: {biller_id}")
        (folder / f"{biller_id}.yaml").write_text(text)
        ids.append(biller_id)
    return ids


def _child(env: dict, mode: str, target: Path):
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(target)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _task_start(env: dict, dag_id: str) -> float:
    sys.path.insert(0, str(REPO / "include"))
    from icbridge.dagbuild.fleet import shard_of

    shard_file = REPO / "dags" / f"billers_{shard_of(dag_id.rpartition('__')[0]):02d}.py"
    seconds, built = _child(env, dag_id, shard_file)
    assert built == [dag_id], built
    return seconds


def run(n: int, tmp: Path) -> dict:
    billers = tmp / f"billers_{n}"
    billers.mkdir()
    ids = _make(billers, n)
    env = dict(os.environ, ICBRIDGE_BILLERS_DIR=str(billers), AIRFLOW_HOME=str(tmp / "airflow"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False")
    files = _child(env, "files", REPO / "dags")
    times = [v[0] for v in files.values()]
    assert sum(v[2] for v in files.values()) == 0, files
    folder_s, dags = _child(env, "folder", REPO / "dags")
    task_s = statistics.median(_task_start(env, f"{ids[0]}__payments") for _ in range(3))
    return {"billers": n, "dags": dags, "files": len(files), "slowest_file_s": max(times),
            "median_file_s": statistics.median(times), "folder_s": folder_s, "task_start_s": task_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--billers", default="500,2000,3000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.billers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        one = run(1, Path(tmp))
        rows = [run(n, Path(tmp)) for n in sizes]
    print(f"task start with a fleet of 1 biller: {one['task_start_s']:.2f} s (DagBag of its file, parsing context)")
    print("| billers | DAGs | files | slowest file | median file | whole folder | task start | vs 1 biller |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['billers']:,} | {r['dags']:,} | {r['files']} | {r['slowest_file_s']:.2f} s | "
              f"{r['median_file_s']:.2f} s | {r['folder_s']:.1f} s | {r['task_start_s']:.2f} s | "
              f"{r['task_start_s'] / one['task_start_s']:.2f}x |")
    worst = max(r["slowest_file_s"] for r in rows)
    ratio = max(r["task_start_s"] / one["task_start_s"] for r in rows)
    print(f"slowest single file {worst:.2f} s (target <= 5 s: {'PASS' if worst <= 5 else 'MISS'}); "
          f"task start {ratio:.2f}x one biller's (target <= 1.5x: {'PASS' if ratio <= 1.5 else 'MISS'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
