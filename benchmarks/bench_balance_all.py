"""Benchmark Balance All at scale: N accounts against the IC and CIS simulators over real HTTP.

    python benchmarks/bench_balance_all.py [--accounts 250000] [--cis inhance|aus]
        [--latency 0.02] [--in-flight 32] [--rate 0] [--client lean|zeep]
        [--page-size 500] [--workdir DIR] [--json] [--save FILE]

Three kinds of process, so no GIL is shared between the sides:

  ic server    InvoiceCloudSimulator (SQLite in --workdir, default on tmpfs), N open invoices
               (10 % of the accounts have two: an older one and the latest) and, for AUS, the
               customer records with the payment blocks;
  cis server   InhanceSimulator or AusSimulator with the accounts, the ``latency`` fault set to
               --latency seconds on every call (faults.set(kind="latency")): each request's
               handler thread sleeps, the server has a thread per keep-alive connection;
  client       the real flow: icbridge.flows.balance_all.run_balance_all with ic_accounts
               (ListOpenInvoices pages), the lean CIS lookup (or zeep with --client zeep),
               InvoiceCloudSide, a ReconcileStore on a SQLite state DB, --in-flight calls in
               flight (one process: see docs/balance-all.md for why no fan-out).

Seeded outcomes (deterministic by account index): ~0.5 % missing in the CIS, ~2 % balance
mismatches, for AUS ~2.5 % cash-only accounts and ~1 % whose IC payment blocks disagree. The
script checks at the end that the counts per outcome equal the seeded ones and that the stored
report has one item per non-matching account.

Printed: accounts, wall time of the run (inside the client, from the first IC page to the
stored report), the bound accounts x latency / in-flight, the ratio, CPU (user+sys) of the
client tree (the client process and its workers) in total and per account, CPU of each server,
peak RSS of the client tree (psutil, sampled every 0.2 s from outside; forked workers' shared
pages counted in each, so an upper bound), the outcome counts and the correctness check.
Target: wall <= 1.2 x bound. Exits 0 either way (a report), 1 if the correctness check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

TARGET_RATIO = 1.2
SAMPLE_S = 0.2
BILLER = "bench"


# --------------------------------------------------------------------------- the seeded data


def account_number(i: int) -> str:
    return f"{10_000_000 + i:08d}"


def seeded(i: int, cis: str) -> dict[str, Any]:
    """Everything about account ``i``: IC invoices, CIS values, expected outcome."""
    balance = Decimal(1000 + (i * 7919) % 90_000) / 100  # 10.00 .. 909.99
    missing = i % 200 == 7
    cis_balance = balance - Decimal("10.00") if i % 50 == 3 else balance
    cash_only = cis == "aus" and i % 40 == 5
    flags_differ = cis == "aus" and i % 100 == 11
    block = cash_only != flags_differ
    if missing:
        outcome = "missing_in_cis"
    elif cis_balance != balance:
        outcome = "balance_mismatch"
    elif flags_differ:
        outcome = "flags_mismatch"
    else:
        outcome = "match"
    return {
        "balance": balance,
        "cis_balance": cis_balance,
        "missing": missing,
        "cash_only": cash_only,
        "block": block,
        "two_invoices": i % 10 == 4,
        "outcome": outcome,
    }


def expected_counts(accounts: int, cis: str) -> dict[str, int]:
    counts = dict.fromkeys(("match", "balance_mismatch", "flags_mismatch", "missing_in_cis", "cis_error"), 0)
    for i in range(accounts):
        counts[seeded(i, cis)["outcome"]] += 1
    return counts


# --------------------------------------------------------------------------- server processes


def serve(kind: str, args: argparse.Namespace) -> None:
    """Runs in a server subprocess: seed, print one JSON line (URL, credentials), serve until
    stdin closes."""
    from icbsim.soapserver import SoapServer

    workdir = Path(args.workdir)
    server = SoapServer(port=args.port, reuse_port=kind == "cis").start()
    replica = kind == "cis" and args.port != 0  # another process of an already seeded CIS simulator
    today = date(2026, 11, 1)
    started = time.perf_counter()
    if kind == "ic":
        from icbsim.invoice_cloud import InvoiceCloudSimulator

        sim = InvoiceCloudSimulator(workdir / "ic_sim.sqlite", server)
        guid, key = str(uuid.uuid4()), secrets.token_urlsafe(24)
        sim.add_biller(guid, key, "999")

        def invoices() -> Any:
            for i in range(args.accounts):
                data = seeded(i, args.cis)
                number = account_number(i)
                if data["two_invoices"]:
                    yield {
                        "account_number": number,
                        "invoice_number": str(5_000_000 + i),
                        "total_amount_due": "12.50",
                        "invoice_date": today - timedelta(days=30),
                    }
                yield {
                    "account_number": number,
                    "invoice_number": str(1_000_000 + i),
                    "total_amount_due": data["balance"],
                    "invoice_date": today,
                }

        sim.add_invoices(guid, invoices())
        if args.cis == "aus":
            sim.add_customers(
                guid,
                (
                    {"account_number": account_number(i), "block_payments_cc": d["block"],
                     "block_payments_eft": d["block"]}
                    for i in range(args.accounts)
                    for d in (seeded(i, args.cis),)
                ),
            )
        info = {"url": sim.base_url, "guid": guid, "key": key}
    else:
        if args.cis == "aus":
            from icbsim.aus import AusSimulator as Simulator
        else:
            from icbsim.inhance import InhanceSimulator as Simulator  # type: ignore[assignment]
        sim = Simulator(workdir / "cis_sim.sqlite", server)  # type: ignore[assignment]
        key = json.loads(sys.stdin.readline())["key"] if replica else secrets.token_urlsafe(24)
        sim.add_biller(BILLER, key)  # type: ignore[attr-defined]
        sim.add_accounts(  # type: ignore[attr-defined]
            BILLER,
            (
                {"account_number": account_number(i), "balance": d["cis_balance"], "cash_only": d["cash_only"]}
                for i in range(0 if replica else args.accounts)
                for d in (seeded(i, args.cis),)
                if not d["missing"]
            ),
        )
        if args.latency > 0:
            sim.faults.set(kind="latency", seconds=args.latency)  # type: ignore[attr-defined]
        info = {"url": sim.endpoint_url(BILLER), "key": key}  # type: ignore[attr-defined]
    info["seed_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(info), flush=True)
    sys.stdin.read()  # until the parent closes it
    server.stop()


# --------------------------------------------------------------------------- the client process


def client(args: argparse.Namespace, ic: dict[str, Any], cis: dict[str, Any]) -> None:
    """Runs in the client subprocess: the real flow; prints one JSON line."""
    from icbridge.flows.balance_all import run_balance_all
    from icbridge.reconcile.cis import aus_lookup, inhance_lookup
    from icbridge.reconcile.compare import Rules
    from icbridge.reconcile.engine import Limits, Settings
    from icbridge.reconcile.invoice_cloud import InvoiceCloudSide, ic_accounts
    from icbridge.soap.aus import AusClient
    from icbridge.soap.inhance import InhanceClient
    from icbridge.soap.invoice_cloud import InvoiceCloudClient
    from icbridge.state.reconcile import ReconcileStore

    options = {"timeout": 30, "pool_maxsize": args.in_flight}
    if args.cis == "aus":
        cis_client: Any = AusClient.single(cis["url"], cis["key"], **options)
        lookup_factory, rules = aus_lookup, Rules(cash_only=True)
    else:
        cis_client = InhanceClient.single(cis["url"], cis["key"], **options)
        lookup_factory, rules = inhance_lookup, Rules()
    timed_lookup = lookup_factory(cis_client.lean() if args.client == "lean" else cis_client)
    durations = array("d")  # wall time of each CIS lookup, as the engine's worker thread sees it

    def lookup(account: str, invoice: str) -> Any:
        begin = time.perf_counter()
        try:
            return timed_lookup(account, invoice)
        finally:
            durations.append(time.perf_counter() - begin)

    ic_client = InvoiceCloudClient(ic["url"], ic["guid"], ic["key"], timeout=60, pool_maxsize=4)
    store = ReconcileStore(f"sqlite:///{Path(args.workdir) / 'state.sqlite'}")
    settings = Settings(rules=rules, limits=Limits(max_in_flight=args.in_flight, calls_per_second=args.rate))
    started = time.perf_counter()
    report = run_balance_all(
        biller_id=BILLER,
        week="2026-W45",
        accounts=ic_accounts(ic_client.lean() if args.client == "lean" else ic_client, args.page_size),
        cis_lookup=lookup,
        ic_side=InvoiceCloudSide(ic_client),
        settings=settings,
        error_threshold_pct=2.0,
        store=store,
    )
    wall = time.perf_counter() - started
    ordered = sorted(durations)
    call_ms = {f"p{q}": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))], 2)
               for q in (50, 90, 99)} if ordered else {}
    call_ms["mean"] = round(1000 * sum(ordered) / len(ordered), 2) if ordered else 0.0
    with store.engine.connect() as connection:
        from sqlalchemy import text

        stored = dict(
            connection.execute(
                text("SELECT outcome, COUNT(*) FROM icb_balance_items WHERE run_id = :r GROUP BY outcome"),
                {"r": report.run_id},
            ).all()
        )
    store.dispose()
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "wall": wall,
                "call_ms": call_ms,
                "status": report.status,
                "accounts_checked": report.summary.accounts_checked,
                "counts": {str(k): v for k, v in report.summary.counts.items()},
                "stored_items": stored,
                "cpu_self": own.ru_utime + own.ru_stime,
                "cpu_children": kids.ru_utime + kids.ru_stime,
                "maxrss_self_kb": own.ru_maxrss,
                "maxrss_children_kb": kids.ru_maxrss,
            }
        ),
        flush=True,
    )


# --------------------------------------------------------------------------- the orchestrator


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return 0


def _cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def _machine_busy() -> tuple[float, float]:
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields), idle


def run(args: argparse.Namespace) -> dict[str, Any]:
    script = str(Path(__file__).resolve())
    common = ["--accounts", str(args.accounts), "--cis", args.cis, "--latency", str(args.latency),
              "--workdir", args.workdir]
    def start(kind: str, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, script, "--serve", kind, *common, *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )

    servers = {"ic": start("ic"), "cis": start("cis")}
    try:
        info = {kind: json.loads(p.stdout.readline()) for kind, p in servers.items()}  # type: ignore[union-attr]
        port = info["cis"]["url"].split(":")[2].split("/")[0]
        for n in range(2, args.cis_processes + 1):  # more processes on the same port (SO_REUSEPORT)
            replica = servers[f"cis{n}"] = start("cis", "--port", port)
            replica.stdin.write(json.dumps({"key": info["cis"]["key"]}) + "\n")  # type: ignore[union-attr]
            replica.stdin.flush()  # type: ignore[union-attr]
            info[f"cis{n}"] = json.loads(replica.stdout.readline())  # type: ignore[union-attr]
        server_cpu0 = {kind: _cpu(p.pid) for kind, p in servers.items()}
        ticks0 = _machine_busy()
        client_proc = subprocess.Popen(
            [sys.executable, script, "--client-run", json.dumps(info["ic"]), json.dumps(info["cis"]), *common,
             "--in-flight", str(args.in_flight), "--client", args.client,
             "--page-size", str(args.page_size), "--rate", str(args.rate)],
            stdout=subprocess.PIPE, text=True,
        )
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(client_proc.pid))
                done.wait(SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, _ = client_proc.communicate()
        done.set()
        sampler.join()
        ticks1 = _machine_busy()
        server_cpu = {kind: round(_cpu(p.pid) - server_cpu0[kind], 1) for kind, p in servers.items()}
    finally:
        for p in servers.values():
            p.stdin.close()  # type: ignore[union-attr]
        for p in servers.values():
            p.wait(timeout=30)
    result = json.loads(out.strip().splitlines()[-1])
    bound = args.accounts * args.latency / args.in_flight
    client_cpu = result["cpu_self"] + result["cpu_children"]
    total, idle = ticks1[0] - ticks0[0], ticks1[1] - ticks0[1]
    machine_busy_pct = 100.0 * (total - idle) / total if total else 0.0
    expected = expected_counts(args.accounts, args.cis)
    non_match = {k: v for k, v in expected.items() if k != "match" and v}
    correct = result["counts"] == expected and result["stored_items"] == non_match
    return {
        "accounts": args.accounts,
        "cis": args.cis,
        "client": args.client,
        "in_flight": args.in_flight,
        "cis_processes": args.cis_processes,
        "latency_s": args.latency,
        "wall_s": round(result["wall"], 1),
        "bound_s": round(bound, 1),
        "ratio": round(result["wall"] / bound, 3) if bound else None,
        "cis_call_wall_ms": result["call_ms"],
        "cycle_ms": round(1000 * result["wall"] * args.in_flight / args.accounts, 2),
        "target_ratio": TARGET_RATIO,
        "client_cpu_s": round(client_cpu, 1),
        "client_cpu_ms_per_account": round(1000 * client_cpu / args.accounts, 3),
        "server_cpu_s": server_cpu,
        "server_cpu_ms_per_account": {k: round(1000 * v / args.accounts, 3) for k, v in server_cpu.items()},
        "machine_busy_pct": round(machine_busy_pct, 1),
        "peak_rss_client_tree_mb": round(peak / 1e6, 1),
        "maxrss_client_mb": round(result["maxrss_self_kb"] / 1e3, 1),
        "maxrss_worker_mb": round(result["maxrss_children_kb"] / 1e3, 1),
        "status": result["status"],
        "counts": result["counts"],
        "expected": expected,
        "correct": correct,
        "seed_s": {k: v["seed_seconds"] for k, v in info.items()},
        "python": platform.python_version(),
        "cores": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=250_000)
    parser.add_argument("--cis", choices=("inhance", "aus"), default="inhance")
    parser.add_argument("--latency", type=float, default=0.02, help="CIS latency per call, seconds")
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.0, help="calls per second bound (0: none)")
    parser.add_argument("--client", choices=("lean", "zeep"), default="lean", help="CIS call path")
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--cis-processes", type=int, default=1,
                        help="CIS simulator processes sharing its port and SQLite file (a real CIS has no GIL)")
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)

    parser.add_argument("--workdir", default=None, help="default: a fresh directory on /dev/shm (tmpfs)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--serve", choices=("ic", "cis"), help=argparse.SUPPRESS)
    parser.add_argument("--client-run", dest="client_run", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args)
        return 0
    if args.client_run:
        client(args, json.loads(args.client_run[0]), json.loads(args.client_run[1]))
        return 0
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    own_dir = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="icbridge-bench-balance-", dir=base)
    try:
        result = run(args)
    finally:
        if own_dir:
            import shutil

            shutil.rmtree(args.workdir, ignore_errors=True)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        verdict = "PASS" if result["ratio"] is not None and result["ratio"] <= TARGET_RATIO else "MISS"
        print(f"Balance All, {result['accounts']:,} accounts, {result['cis']} ({result['client']} CIS client), "
              f"{result['in_flight']} in flight, latency {result['latency_s'] * 1000:g} ms, "
              f"{result['cis_processes']} CIS simulator process(es)")
        print(f"  wall        {result['wall_s']:>8.1f} s   bound {result['bound_s']:.1f} s   ratio "
              f"{result['ratio']:.2f} (target <= {TARGET_RATIO}) {verdict}")
        print(f"  CIS call    {result['cis_call_wall_ms']} ms wall as the client sees it; "
              f"one slot's cycle {result['cycle_ms']} ms (wall x in-flight / accounts)")
        print(f"  client CPU  {result['client_cpu_s']:>8.1f} s   {result['client_cpu_ms_per_account']:.3f} ms/account")
        print(f"  server CPU  {result['server_cpu_s']} s, ms/account {result['server_cpu_ms_per_account']}")
        print(f"  machine     {result['machine_busy_pct']} % busy (both cores, everything)")
        print(f"  peak RSS    client tree {result['peak_rss_client_tree_mb']} MB "
              f"(ru_maxrss {result['maxrss_client_mb']} MB)")
        print(f"  outcomes    {result['counts']}  status {result['status']}")
        print(f"  check       {'OK: counts and stored items equal the seeded ones' if result['correct'] else 'FAILED'}"
              f" (expected {result['expected']})")
        print(f"  seeding     {result['seed_s']} s")
    return 0 if result["correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
