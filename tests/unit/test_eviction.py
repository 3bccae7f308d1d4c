"""Where eviction stops: the lower of max_size's low-water mark and what keep_free asks for."""

from __future__ import annotations

from proxy.storage.eviction import target_bytes

GiB = 1024**3


def test_no_bound_crossed_means_no_eviction() -> None:
    assert target_bytes(10 * GiB, 0) is None
    assert target_bytes(10 * GiB, 20 * GiB, keep_free=GiB, free=5 * GiB) is None


def test_max_size_evicts_to_its_low_water_mark() -> None:
    assert target_bytes(21 * GiB, 20 * GiB) == 18 * GiB


def test_keep_free_evicts_the_shortfall_and_a_slack() -> None:
    # 0.5 GiB short of 1 GiB free, plus 5% of keep_free so the next file does not evict again
    target = target_bytes(10 * GiB, 0, keep_free=GiB, free=GiB // 2)
    assert target == 10 * GiB - GiB // 2 - int(GiB * 0.05)


def test_the_lower_target_wins_and_never_goes_below_zero() -> None:
    assert target_bytes(21 * GiB, 20 * GiB, keep_free=GiB, free=0) == 18 * GiB
    capped = target_bytes(200 * GiB, 0, keep_free=100 * GiB, free=99 * GiB)
    assert capped == 199 * GiB - 256 * 1024**2  # the slack is capped at 256 MiB
    assert target_bytes(GiB, 0, keep_free=100 * GiB, free=0) == 0
