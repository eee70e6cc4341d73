"""The real scheduler with the whole fleet: how long until every due DAG has its run.

    python benchmarks/bench_scheduler.py [--billers 500] [--timeout 900]

Generates N billers (inHance, AUS and Logis in turn, as bench_fleet.py), serializes their
DAGs into a fresh SQLite metadata DB (``airflow dags reserialize``), unpauses every DAG and
starts ``airflow scheduler`` (LocalExecutor). ``default_pool`` has 0 slots and the endpoint
pools are off, so no task is queued: what is timed is the scheduler creating runs. With
``catchup=False`` each unpaused DAG is due at once for its latest interval, as after a
deployment or an outage of the whole fleet. Prints the seconds until 25 %, 50 %, 100 % of the
DAGs have a run, and the runs per second. docs/benchmarks.md keeps the figures.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fleet import _make  # noqa: E402 - the same generated fleet


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--billers", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--per-loop", type=int, help="[scheduler] max_dagruns_to_create_per_loop (Airflow: 10)")
    args = parser.parse_args()
    airflow = str(Path(sys.executable).parent / "airflow")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        billers = home / "billers"
        billers.mkdir()
        _make(billers, args.billers)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(AIRFLOW_HOME=str(home / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
                   AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"), AIRFLOW__CORE__EXECUTOR="LocalExecutor",
                   AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
                   AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True", ICBRIDGE_BILLERS_DIR=str(billers),
                   ICBRIDGE_STATE_DB_URL=f"sqlite:///{home / 'state.db'}")
        if args.per_loop:
            env["AIRFLOW__SCHEDULER__MAX_DAGRUNS_TO_CREATE_PER_LOOP"] = str(args.per_loop)
        (home / "airflow").mkdir()
        run = lambda *a: subprocess.run([airflow, *a], env=env, check=True, capture_output=True)  # noqa: E731
        run("db", "migrate")
        started = time.perf_counter()
        run("dags", "reserialize")
        print(f"billers {args.billers}: serialized in {time.perf_counter() - started:.1f} s; "
              f"max_dagruns_to_create_per_loop {args.per_loop or 'default (10)'}")
        run("pools", "set", "default_pool", "0", "no task runs: only run creation is timed")
        db = sqlite3.connect(home / "airflow.db")
        dags = db.execute("SELECT count(*) FROM dag WHERE is_stale = 0").fetchone()[0]
        db.execute("UPDATE dag SET is_paused = 0")
        db.commit()
        print(f"DAGs unpaused: {dags}")
        log = (home / "scheduler.log").open("w")
        scheduler = subprocess.Popen([airflow, "scheduler"], env=env, stdout=log, stderr=subprocess.STDOUT)
        begun, marks, last = time.perf_counter(), {}, 0
        try:
            while time.perf_counter() - begun < args.timeout:
                runs = db.execute("SELECT count(DISTINCT dag_id) FROM dag_run").fetchone()[0]
                for share in (0.25, 0.5, 1.0):
                    if share not in marks and runs >= share * dags:
                        marks[share] = time.perf_counter() - begun
                if runs != last:
                    last = runs
                if 1.0 in marks or scheduler.poll() is not None:
                    break
                time.sleep(1)
        finally:
            scheduler.terminate()
            try:
                scheduler.wait(60)
            except subprocess.TimeoutExpired:
                scheduler.kill()
        for share in (0.25, 0.5, 1.0):
            got = marks.get(share)
            print(f"{int(share * 100):>3} % of the DAGs with a run: {f'{got:.0f} s' if got else 'not reached'}")
        total = marks.get(1.0)
        print(f"runs created: {last} of {dags}" + (f" ({last / total:.1f} runs/s)" if total else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
