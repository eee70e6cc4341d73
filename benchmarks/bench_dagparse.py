"""DAG parsing with many billers: time to fill the DagBag from dags/billers.py.

    python benchmarks/bench_dagparse.py [--billers 500]

Generates N biller files (copies of the demo biller with their own ids and BIDs) in a temp
folder, points ICBRIDGE_BILLERS_DIR at it, and times DagBag(dag_folder=dags/) in a fresh
process (what the dag-processor does each parse), against Airflow's 30 s dagbag_import_timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, os, sys, time
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
t1 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_airflow_s": t1 - t0, "fill_dagbag_s": t2 - t1, "dags": len(bag.dags),
                  "import_errors": len(bag.import_errors)}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--billers", type=int, default=500)
    args = parser.parse_args()
    template = (REPO / "include" / "billers" / "demo_aus.yaml").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        billers = Path(tmp) / "billers"
        billers.mkdir()
        for n in range(args.billers):
            biller_id = f"bench_{n:04d}"
            text = template.replace("biller_id: demo_aus", f"biller_id: {biller_id}")
            text = text.replace('bid: "123"', f'bid: "{1000 + n}"').replace("demo_aus_", f"{biller_id}_")
            (billers / f"{biller_id}.yaml").write_text(text)
        env = dict(
            os.environ,
            ICBRIDGE_BILLERS_DIR=str(billers),
            AIRFLOW_HOME=str(Path(tmp) / "airflow"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
        )
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(REPO / "dags")], env=env, check=True, capture_output=True, text=True
        ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    fill = result["fill_dagbag_s"]
    print(f"billers: {args.billers}  DAGs: {result['dags']}  import errors: {result['import_errors']}")
    print(f"import airflow: {result['import_airflow_s']:.2f} s (once per parsing process)")
    print(f"fill DagBag:    {fill:.2f} s  = {1000 * fill / max(args.billers, 1):.1f} ms per biller")
    print(f"target < 10 s (Airflow dagbag_import_timeout 30 s): {'PASS' if fill < 10 else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
