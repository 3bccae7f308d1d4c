"""Prometheus metrics, one registry per app so that test sessions can build many apps."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)


class _ProcessCollector(ProcessCollector):
    """prometheus_client's, exporting even where /proc/stat is hidden (systemd's ProcSubset=pid).

    It reads the boot time from /proc/stat and exports nothing without it; the kernel's
    CLOCK_BOOTTIME gives the same number.
    """

    def _boot_time(self) -> float:
        try:
            btime = super()._boot_time()  # type: ignore[no-untyped-call]
        except OSError:
            btime = None
        return float(btime) if btime else time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


class Metrics:
    """The metric objects; services receive this so lower layers count without the web layer."""

    def __init__(self, proc: str = "/proc") -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # process_resident_memory_bytes, open fds, CPU seconds
        _ProcessCollector(proc=proc, registry=r)
        PlatformCollector(registry=r)
        self.requests = Counter(
            "wheelwell_http_requests_total",
            "HTTP requests by route class and status",
            ["route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "wheelwell_http_request_duration_seconds",
            "HTTP request latency by route class and status",
            ["route", "status"],
            registry=r,
        )
        self.page_cache = Counter(
            "wheelwell_page_cache_total",
            "Project page lookups by outcome (hit, miss, revalidated, stale)",
            ["outcome"],
            registry=r,
        )
        self.file_cache = Counter(
            "wheelwell_file_cache_total",
            "File requests by outcome (hit, miss, joined, passthrough; probe: a HEAD or Range "
            "answered here; range: read upstream once and kept)",
            ["outcome"],
            registry=r,
        )
        self.bytes_from_cache = Counter(
            "wheelwell_file_cache_served_bytes_total", "Bytes of files served from disk", registry=r
        )
        self.bytes_from_upstream = Counter(
            "wheelwell_upstream_received_bytes_total",
            "Bytes of files received from the upstream",
            registry=r,
        )
        self.upstream_requests = Counter(
            "wheelwell_upstream_requests_total",
            "Upstream requests by upstream, kind and outcome",
            ["upstream", "kind", "outcome"],
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "wheelwell_upstream_request_duration_seconds",
            "Upstream time to response headers",
            ["upstream", "kind"],
            registry=r,
        )
        self.downloads_in_flight = Gauge(
            "wheelwell_downloads_in_flight", "Upstream file downloads in progress", registry=r
        )
        self.upstream_offline = Gauge(
            "wheelwell_upstream_offline",
            "1 while the upstream is not asked (offline mode or resting after failures)",
            registry=r,
        )
        self.blob_bytes = Gauge(
            "wheelwell_blob_store_bytes",
            "Bytes of files in the content-addressed store",
            registry=r,
        )
        self.blob_files = Gauge(
            "wheelwell_blob_store_files", "Files in the content-addressed store", registry=r
        )
        self.evictions = Counter(
            "wheelwell_cache_evictions_total", "Mirror files evicted to honour max_size", registry=r
        )
        self.uploads = Counter(
            "wheelwell_uploads_total", "Files uploaded, by index", ["index"], registry=r
        )
        self.generated_metadata = Counter(
            "wheelwell_generated_metadata_total",
            "Core metadata read out of wheels the upstream gives none for, by how "
            "(range: Range reads; whole: the whole small wheel in one read; download)",
            ["how"],
            registry=r,
        )
        self.hash_mismatches = Counter(
            "wheelwell_hash_mismatches_total", "Downloads rejected for a wrong sha256", registry=r
        )
        self.uncached_downloads = Counter(
            "wheelwell_uncached_downloads_total",
            "Mirror files streamed to a client without being stored, by reason",
            ["reason"],
            registry=r,
        )
        self.object_store_errors = Counter(
            "wheelwell_object_store_errors_total",
            "Failed requests to the object store (storage.backend: s3), by operation",
            ["operation"],
            registry=r,
        )
        self.object_store_bytes_put = Counter(
            "wheelwell_object_store_put_bytes_total",
            "Bytes of verified blobs put into the object store",
            registry=r,
        )
        self.object_store_bytes = Gauge(
            "wheelwell_object_store_bytes",
            "Bytes of the blobs in the object store, as the primary accounts them",
            registry=r,
        )
        self.object_store_files = Gauge(
            "wheelwell_object_store_files",
            "Blobs in the object store, as the primary accounts them",
            registry=r,
        )
        self.object_store_evictions = Counter(
            "wheelwell_object_store_evictions_total",
            "Mirror files deleted from the object store to honour storage.max_size",
            registry=r,
        )
        self.damaged_served = Counter(
            "wheelwell_blob_damaged_total",
            "Stored files refused at serve time because their size is wrong, by index kind",
            ["kind"],
            registry=r,
        )
        self.scrub_bytes = Counter(
            "wheelwell_scrub_bytes_total", "Bytes the background scrubber re-hashed", registry=r
        )
        self.scrub_files = Counter(
            "wheelwell_scrub_files_total", "Stored files the scrubber checked", registry=r
        )
        self.scrub_failures = Counter(
            "wheelwell_scrub_failures_total",
            "Stored files the scrubber found corrupt and quarantined, by index kind",
            ["kind"],
            registry=r,
        )
        self.scrub_passes = Counter(
            "wheelwell_scrub_passes_total", "Full scrub passes completed", registry=r
        )
        self.upstream_available = Gauge(
            "wheelwell_upstream_available",
            "Per upstream origin and scope (root's or users' mirrors): 0 while it rests after "
            "failures, else 1",
            ["upstream", "scope"],
            registry=r,
        )
        self.login_failures = Counter(
            "wheelwell_login_failures_total",
            "Failed logins by reason (unknown-user, password, token)",
            ["reason"],
            registry=r,
        )
        self.login_throttled = Counter(
            "wheelwell_login_throttled_total",
            "Login attempts refused with 429, by limit (address, user, busy)",
            ["limit"],
            registry=r,
        )
        self.storage_max_size = Gauge(
            "wheelwell_storage_max_size_bytes",
            "storage.max_size: the mirror cache's bound (0: unbounded)",
            registry=r,
        )
        self.data_dir_free = Gauge(
            "wheelwell_data_dir_free_bytes",
            "Bytes free for the daemon on the filesystem holding the data dir",
            registry=r,
        )
        self.data_dir_capacity = Gauge(
            "wheelwell_data_dir_capacity_bytes",
            "Size of the filesystem holding the data dir",
            registry=r,
        )

        # replication: on a primary
        self.replicas_connected = Gauge(
            "wheelwell_replicas_connected",
            "Replicas streaming this primary's changelog",
            registry=r,
        )
        self.replica_lag = Gauge(
            "wheelwell_replica_lag_serials",
            "Per replica: changelog entries not sent to it yet",
            ["replica"],
            registry=r,
        )
        # replication: on a replica
        self.replication_lag_serials = Gauge(
            "wheelwell_replication_lag_serials",
            "Changelog entries of the primary not applied here yet",
            registry=r,
        )
        self.replication_lag_seconds = Gauge(
            "wheelwell_replication_lag_seconds",
            "Seconds since this replica was last caught up with its primary (0: caught up)",
            registry=r,
        )
        self.replication_last_contact = Gauge(
            "wheelwell_replication_last_contact_seconds",
            "Seconds since the primary was last heard from (an entry or a heartbeat)",
            registry=r,
        )
        self.replication_files_pending = Gauge(
            "wheelwell_replication_files_pending",
            "Private files of the primary not copied here yet",
            registry=r,
        )
        self.hook_attempts = Counter(
            "wheelwell_hook_attempts_total",
            "Hook delivery attempts by kind (webhook, jenkins) and outcome (delivered, retry, "
            "failed: given up)",
            ["kind", "outcome"],
            registry=r,
        )

    def watch_storage(self, data_dir: Path, max_size: int) -> None:
        """The storage gauges; free space is read at scrape time (other writers share the disk)."""
        self.storage_max_size.set(max_size)
        self.data_dir_free.set_function(lambda: _disk_usage(data_dir)[0])
        self.data_dir_capacity.set_function(lambda: _disk_usage(data_dir)[1])


def _disk_usage(path: Path) -> tuple[int, int]:
    """(free, total) bytes of the filesystem holding `path`; zeros if it is gone."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return 0, 0
    return usage.free, usage.total
