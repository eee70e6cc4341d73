"""An AUS file mapped from disk (issue 14): read by ranges, never whole, with the same output
as from bytes; its reads agree with bytes' whatever the block size; a worker that dies fails
the file instead of hanging it."""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from icbridge.layouts.aus import AusSource, FileRejected
from icbridge.mapping import workers
from icbridge.mapping.aus_to_bif import map_aus
from icbsim import aus_files
from tests.support.aus_mapping import DAY, NAME, SETTINGS, assert_same_output


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
    from_bytes = map_aus(data, NAME, settings, tmp_path / "bytes", DAY, workers=2, range_bytes=100_000)

    def whole(self):
        raise AssertionError("a file in the common shape is read by ranges")

    monkeypatch.setattr(AusSource, "whole", whole)
    serial = map_aus(path, NAME, settings, tmp_path / "serial", DAY, workers=1, range_bytes=100_000)
    parallel = map_aus(path, NAME, settings, tmp_path / "parallel", DAY, workers=2, range_bytes=100_000)
    for other in (serial, parallel):
        assert_same_output(from_bytes, other)
    assert parallel.warning_counts["control characters removed"] == len(range(0, len(rows), 211))
    assert len(parallel.bifs) > 3 and parallel.rejects


def test_a_file_on_disk_that_needs_the_line_path_maps_alike_and_keeps_its_exact_error(tmp_path):
    """A blank line sends a file on disk to the line path (read whole): the same output as
    from bytes. A byte that is not cp1252 gets the line path's message, naming the line."""
    data = aus_files.format_file(aus_files.make_rows(50, seed=2))
    cut = data.index(b"\n", len(data) // 2) + 1
    blank = data[:cut] + b"\r\n" + data[cut:]  # read_aus numbers and skips it
    (tmp_path / "blank.txt").write_bytes(blank)
    assert_same_output(
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
        workers.run(_dies, list(range(6)), 2)


def _every_way(tmp_path, data: bytes, monkeypatch) -> list[str]:
    """The outcome of mapping `data` by the line path, from bytes, and from disk with 1 and 2
    workers (small ranges): 'OK <summary>' or the rejection's text."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "in.txt").write_bytes(data)
    outcomes = []
    on_disk = tmp_path / "in.txt"
    ways = [("lines", data, 1), ("ranges", data, 1), ("ranges", on_disk, 1), ("ranges", on_disk, 2)]
    for n, (strategy, source, n_workers) in enumerate(ways):
        try:
            result = map_aus(
                source, NAME, SETTINGS, tmp_path / f"out{n}", DAY, workers=n_workers, strategy=strategy, range_bytes=300
            )
            outcomes.append(f"OK {result.summary()} {result.warning_counts}")
        except FileRejected as exc:
            outcomes.append(str(exc))
    return outcomes


def test_a_control_byte_inside_a_utf8_character_is_an_encoding_error_by_every_path(tmp_path, monkeypatch):
    """read_aus decodes before it removes control characters: C3 01 A9 is not UTF-8, whichever
    path maps the file (the range path removed the 01 first and read an é)."""
    rows = aus_files.make_rows(5, seed=4)
    rows[3]["CustomerName"] = "Renée"
    data = b"\xef\xbb\xbf" + aus_files.render(rows).encode("utf-8")
    assert len(set(_every_way(tmp_path / "ok", data, monkeypatch))) == 1
    outcomes = _every_way(tmp_path / "bad", data.replace("é".encode(), b"\xc3\x01\xa9"), monkeypatch)
    assert len(set(outcomes)) == 1 and "is not valid utf-8 (rule: encoding)" in outcomes[0]


def test_a_file_that_looks_utf16_is_rejected_by_every_path(tmp_path, monkeypatch):
    rows = aus_files.make_rows(2, seed=4)
    rows[0]["CustomerName"] = "Bob" + "\x00" * 3000  # NUL bytes fill its first 4 KiB
    outcomes = _every_way(tmp_path, aus_files.render(rows).encode("cp1252"), monkeypatch)
    assert len(set(outcomes)) == 1 and "UTF-16" in outcomes[0]


def test_control_characters_are_counted_by_every_path(tmp_path, monkeypatch):
    """A file without a final line break goes to the line path: it counts the control
    characters it removed as the range path does."""
    rows = aus_files.make_rows(4, seed=4)
    rows[1]["CustomerName"] += "\x07"
    data = aus_files.render(rows).encode("cp1252")
    for case in (data, data.rstrip(b"\r\n")):
        outcomes = _every_way(tmp_path / str(len(case)), case, monkeypatch)
        assert len(set(outcomes)) == 1 and "'control characters removed': 1" in outcomes[0]


def _map_in_a_daemon(path: str, out: str, answer) -> None:
    try:
        result = map_aus(Path(path), NAME, SETTINGS, Path(out), DAY, workers=2)
        answer.put(("ok", result.bills_read))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        answer.put(("failed", repr(exc)))


def test_a_daemonic_process_maps_with_workers(tmp_path):
    """Celery runs tasks in daemonic processes, which multiprocessing refuses children: the
    workers start anyway (they cannot outlive the mapping) and the output is whole."""
    import multiprocessing

    path = aus_files.write_file(tmp_path / NAME, 400)
    ctx = multiprocessing.get_context("fork")
    answer = ctx.Queue()
    daemon = ctx.Process(target=_map_in_a_daemon, args=(str(path), str(tmp_path / "out"), answer), daemon=True)
    daemon.start()
    outcome = answer.get(timeout=120)
    daemon.join(30)
    assert outcome == ("ok", 400), outcome[1]
