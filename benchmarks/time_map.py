"""Time map_aus (read, map, check, write) on one AUS file, default workers; prints wall time,
rejects and warning counts. For comparing two checkouts on the same file:

    PYTHONPATH=<checkout>/include python benchmarks/time_map.py FILE.TXT
"""

import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from icbridge.mapping.aus_to_bif import InvoiceSettings, map_aus

s = InvoiceSettings(bid="123", biller_guid="11111111-2222-3333-4444-555555555555",
                    invoice_format_guid="5D1C3E2A-7B4F-4C8E-9A61-0F2B3C4D5E6F", invoice_type_id="7",
                    reject_threshold_pct=100)
data = Path(sys.argv[1]).read_bytes()
t = time.perf_counter()
r = map_aus(data, "123_20261101_UB.TXT", s, Path(tempfile.mkdtemp()), date(2026, 11, 1))
wall = time.perf_counter() - t
cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
print(f"{wall:.2f} s wall, {cpu:.1f} s user CPU, rejects {len(r.rejects)}, warnings {r.warning_counts}")
