"""The CPU-time accounting of benchmarks/data_throughput.py (the benchmark itself is run by hand)."""
import subprocess
import sys

import pytest

from benchmarks.data_throughput import cpu_seconds, total_cpu_seconds, wait_until_idle

# A child that burns CPU in a second thread (counted too), reports its own process CPU clock, then idles.
CHILD = """
import sys, threading, time
def spin():
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
thread = threading.Thread(target=spin); thread.start(); thread.join()
print(time.process_time(), flush=True)
sys.stdin.readline()
"""


def test_cpu_seconds_reads_a_process_total_over_all_its_threads():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        own_clock = float(child.stdout.readline())
        wait_until_idle([child.pid], quiet_s=0.1)
        assert own_clock >= 0.3
        assert cpu_seconds(child.pid) == pytest.approx(own_clock, abs=0.03)  # clock ticks of 10 ms
        assert total_cpu_seconds([child.pid, child.pid]) == pytest.approx(2 * cpu_seconds(child.pid), abs=0.03)
    finally:
        child.communicate("\n")
