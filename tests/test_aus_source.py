"""An AUS file mapped from disk (issue 14): read by ranges, never whole, with the same output
as from bytes; its reads agree with bytes' whatever the block size; a worker that dies fails
the file instead of hanging it."""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from icbridge.layouts.aus import AusSource, FileRejected
from icbridge.mapping import aus_to_bif
from icbridge.mapping.aus_to_bif import map_aus
from icbridge.sim import aus_files
from tests.test_aus_mapping import DAY, NAME, SETTINGS, _assert_same_output


@pytest.mark.parametrize("tail", [b"", b"\x1a", b"\x1a" * 5000])
def test_a_file_on_disk_reads_as_its_bytes(tmp_path, tail):
    """find, rfind, count and read on disk (blocks of 7 bytes, so every search crosses
    blocks) agree with bytes'; the DOS end-of-file bytes are not part of either."""
    data = b"HEADER|A\n1|x|y\n22|\xe9|z\n333|q|\n" + b"TRAILER|3|3|0\n"
    path = tmp_path / NAME
    path.write_bytes(data + tail)
    disk, held = AusSource(path=path), AusSource(data=data + tail)
    disk.BLOCK = 7
    assert disk.size == held.size == len(data)
    assert disk.whole() == held.whole() == data
    for start in range(0, len(data), 5):
        for stop in range(start, len(data) + 3, 6):
            for sub in (b"\n", b"|", b"z"):
                assert disk.find(sub, start, stop) == held.find(sub, start, stop), (sub, start, stop)
                assert disk.rfind(sub, start, stop) == held.rfind(sub, start, stop), (sub, start, stop)
                assert disk.count(sub, start, stop) == held.count(sub, start, stop), (sub, start, stop)
            assert disk.read(start, stop) == held.read(start, stop)
    disk.close()


def test_a_file_on_disk_is_mapped_by_ranges_never_whole(tmp_path, monkeypatch):
    """From its path, a file in the common shape is never read whole (2 workers the
    forkserver starts, and serially): the same parts, rejects and warnings as from bytes; the
    control characters legacy exporters leave in values are removed and counted on the range
    path too."""
    rows = aus_files.make_rows(3_000, seed=3)
    for n, r in enumerate(rows):
        if n % 101 == 0:
            r["Email"] = "broken@"
        if n % 211 == 0:
            r["CustomerName"] = r["CustomerName"] + "\x0c"  # a form feed, as old exporters write
        if n % 997 == 0:
            r["BillDate"] = "02/30/2026"
    data = aus_files.format_file(rows) + b"\x1a"
    path = tmp_path / NAME
    path.write_bytes(data)
    settings = dataclasses.replace(SETTINGS, max_invoices_per_file=700)
    monkeypatch.setattr(aus_to_bif, "CHUNK_BYTES", 100_000)
    from_bytes = map_aus(data, NAME, settings, tmp_path / "bytes", DAY, workers=2)

    def whole(self):
        raise AssertionError("a file in the common shape is read by ranges")

    monkeypatch.setattr(AusSource, "whole", whole)
    serial = map_aus(path, NAME, settings, tmp_path / "serial", DAY, workers=1)
    parallel = map_aus(path, NAME, settings, tmp_path / "parallel", DAY, workers=2)
    for other in (serial, parallel):
        _assert_same_output(from_bytes, other)
    assert parallel.warning_counts["control characters removed"] == len(range(0, len(rows), 211))
    assert len(parallel.bifs) > 3 and parallel.rejects


def test_a_file_on_disk_that_needs_the_line_path_maps_alike_and_keeps_its_exact_error(tmp_path):
    """A blank line sends a file on disk to the line path (read whole): the same output as
    from bytes. A byte that is not cp1252 gets the line path's message, naming the line."""
    data = aus_files.format_file(aus_files.make_rows(50, seed=2))
    cut = data.index(b"\n", len(data) // 2) + 1
    blank = data[:cut] + b"\r\n" + data[cut:]  # read_aus numbers and skips it
    (tmp_path / "blank.txt").write_bytes(blank)
    _assert_same_output(
        map_aus(blank, NAME, SETTINGS, tmp_path / "a", DAY, workers=1),
        map_aus(tmp_path / "blank.txt", NAME, SETTINGS, tmp_path / "b", DAY, workers=2),
    )
    undecodable = data[:cut] + data[cut:].replace(b"|", b"|\x81", 1)
    (tmp_path / "bad.txt").write_bytes(undecodable)
    with pytest.raises(FileRejected) as from_disk:
        map_aus(tmp_path / "bad.txt", NAME, SETTINGS, tmp_path / "c", DAY, workers=2)
    with pytest.raises(FileRejected) as from_bytes:
        map_aus(undecodable, NAME, SETTINGS, tmp_path / "d", DAY, workers=1)
    assert str(from_disk.value) == str(from_bytes.value)
    assert "byte 0x81 is not valid cp1252" in str(from_disk.value) and from_disk.value.line > 2
    assert list((tmp_path / "c").iterdir()) == []


def _dies(item: int) -> int:
    if item == 3:
        os._exit(9)  # as a worker the kernel kills for memory
    return item


def test_a_worker_that_dies_fails_the_file_instead_of_hanging(tmp_path):
    with pytest.raises(BrokenProcessPool):
        aus_to_bif._run(_dies, list(range(6)), 2)
