"""Process helpers for the benchmark: ports, startup waits, installs, CPU and RSS readings.

CPU time and RSS are read from /proc for a server's whole process tree (the
process and every descendant), so `--workers 2` and nginx's worker count too.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None,
                  timeout: float = 30.0) -> None:
    """Wait until 127.0.0.1:`port` accepts connections; raise RuntimeError on exit or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"process exited with status {process.returncode} before "
                               f"listening on port {port}: {stderr.strip()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f} s")


def apt_install(packages: list[str]) -> None:
    """Install Debian packages with apt-get; needs root. Raises RuntimeError on failure."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(f"cannot install {', '.join(packages)}: apt-get needs root; "
                           f"install them by hand or pass --no-install")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    logger.info("installing Debian packages: %s", " ".join(packages))
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", *packages]):
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed with status {result.returncode}: "
                               f"{result.stderr.strip()[-2000:]}")


def descendants(pid: int) -> list[int]:
    """Return `pid` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after it.
        fields = stat[stat.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found = [pid]
    index = 0
    while index < len(found):
        found.extend(children.get(found[index], []))
        index += 1
    return found


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def tree_cpu_seconds(pid: int) -> float:
    """Return user plus system CPU seconds of `pid` and its live descendants.

    Includes cutime/cstime, which count children that have exited and been waited for.
    """
    total = 0
    for member in descendants(pid):
        fields = _stat_fields(member)
        if fields is None:
            continue
        # Fields after the command name start at field 3 (state): utime is field 14.
        total += sum(int(value) for value in fields[11:15])
    return total / CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """Return user plus system CPU seconds of `pid` alone (all its threads)."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else sum(int(value) for value in fields[11:13]) / CLOCK_TICKS


def tree_rss_bytes(pid: int) -> int:
    """Return the summed resident set size of `pid` and its live descendants."""
    total = 0
    for member in descendants(pid):
        fields = _stat_fields(member)
        if fields is not None:
            total += int(fields[21]) * PAGE_SIZE
    return total


@dataclass
class Usage:
    """CPU seconds and peak RSS of a process tree over one measured interval."""

    cpu_seconds: float
    peak_rss_bytes: int
    rss_samples: list[tuple[float, int]]
    """(seconds since the start, RSS bytes) pairs."""
    main_cpu_seconds: float
    """CPU seconds of the top process alone, without its descendants."""


class UsageMonitor:
    """Samples a process tree's RSS every `interval` seconds and its CPU time at both ends."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self._stop = threading.Event()
        self._samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._start_cpu = 0.0
        self._start_main_cpu = 0.0
        self._start_time = 0.0

    def __enter__(self) -> UsageMonitor:
        self._start_cpu = tree_cpu_seconds(self.pid)
        self._start_main_cpu = process_cpu_seconds(self.pid)
        self._start_time = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.usage = Usage(tree_cpu_seconds(self.pid) - self._start_cpu,
                           max((rss for _, rss in self._samples), default=0),
                           self._samples,
                           process_cpu_seconds(self.pid) - self._start_main_cpu)

    def _sample(self) -> None:
        while True:
            self._samples.append((time.monotonic() - self._start_time, tree_rss_bytes(self.pid)))
            if self._stop.wait(self.interval):
                self._samples.append((time.monotonic() - self._start_time,
                                      tree_rss_bytes(self.pid)))
                return


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Send SIGTERM to the process group of `process`, then SIGKILL after `timeout`."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, 15)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        logger.warning("process %d ignored SIGTERM for %.0f s; killing it", process.pid, timeout)
        os.killpg(process.pid, 9)
        process.wait()
