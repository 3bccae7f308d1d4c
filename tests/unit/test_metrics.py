"""Metrics that must exist wherever the daemon runs, and the storage gauges read at scrape time."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from proxy.metrics import Metrics


def test_process_metrics_exist_where_proc_stat_is_hidden(tmp_path: Path) -> None:
    """systemd's ProcSubset=pid leaves /proc/self but hides /proc/stat (the boot time)."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / str(os.getpid())).symlink_to(f"/proc/{os.getpid()}")
    (proc / "self").symlink_to(f"/proc/{os.getpid()}")
    assert not (proc / "stat").exists()
    metrics = Metrics(proc=str(proc))
    sample = metrics.registry.get_sample_value
    rss = sample("process_resident_memory_bytes")
    assert rss is not None and rss > 0
    start = sample("process_start_time_seconds")
    real_start = Metrics().registry.get_sample_value("process_start_time_seconds")
    assert start is not None and real_start is not None
    assert abs(start - real_start) < 2.0  # CLOCK_BOOTTIME gives /proc/stat's btime
    assert sample("process_open_fds") is not None


def test_storage_gauges_read_the_disk_at_scrape_time(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.watch_storage(tmp_path, 5 * 1024**3)
    sample = metrics.registry.get_sample_value
    assert sample("wheelwell_storage_max_size_bytes") == 5 * 1024**3
    usage = shutil.disk_usage(tmp_path)
    assert sample("wheelwell_data_dir_capacity_bytes") == usage.total
    free = sample("wheelwell_data_dir_free_bytes")
    assert free is not None and abs(free - usage.free) < 256 * 1024**2
    shutil.rmtree(tmp_path)
    assert sample("wheelwell_data_dir_free_bytes") == 0  # gone: the scrape still works
