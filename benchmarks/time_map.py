"""Time map_aus (read, map, check, write) on one AUS file, default workers; prints wall time,
rejects and warning counts. For comparing two checkouts on the same file:

    PYTHONPATH=<checkout>/include python benchmarks/time_map.py FILE.TXT [--bytes]

By default map_aus is given the path (read by ranges); --bytes reads the file whole first.
"""

import resource
import sys
import tempfile
import time
from datetime import date
from multiprocessing import forkserver
from pathlib import Path

from icbridge.mapping.aus_to_bif import InvoiceSettings, map_aus

s = InvoiceSettings(bid="123", biller_guid="11111111-2222-3333-4444-555555555555",
                    invoice_format_guid="5D1C3E2A-7B4F-4C8E-9A61-0F2B3C4D5E6F", invoice_type_id="7",
                    reject_threshold_pct=100)
t = time.perf_counter()
source = Path(sys.argv[1]).read_bytes() if "--bytes" in sys.argv[2:] else Path(sys.argv[1])
r = map_aus(source, "123_20261101_UB.TXT", s, Path(tempfile.mkdtemp()), date(2026, 11, 1))
wall = time.perf_counter() - t
forkserver._forkserver._stop()  # waited for: its workers' CPU counts in RUSAGE_CHILDREN
cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
print(f"{wall:.2f} s wall, {cpu:.1f} s user CPU, rejects {len(r.rejects)}, warnings {r.warning_counts}")
