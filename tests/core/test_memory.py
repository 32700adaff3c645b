import sys
import time

import pytest

from sopforge.memory import PeakRSS, current_rss_mib, lifetime_peak_rss_mib

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-block peaks need /proc"
)


def test_peak_sees_memory_held_inside_the_block_and_released_before_exit():
    with PeakRSS(interval=0.01) as m:
        block = bytearray(200 * 1024 * 1024)  # 200 MiB, touched so it is resident
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(0.1)  # the sampler thread needs the GIL to see it (CI once missed a bare loop)
        del block
    assert m.peak_mib - m.start_mib >= 150, (m.start_mib, m.peak_mib)
    assert current_rss_mib() < m.peak_mib - 100  # released: the peak is not just the end value


def test_a_later_block_gets_its_own_peak_not_the_process_lifetime_one():
    with PeakRSS(interval=0.01) as first:
        block = bytearray(150 * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(0.1)  # held for ten sampling intervals; without it the sampler may never run
        del block
    with PeakRSS(interval=0.01) as second:
        sum(range(1000))
    assert second.peak_mib < first.peak_mib - 100
    assert lifetime_peak_rss_mib() >= first.peak_mib - 1
