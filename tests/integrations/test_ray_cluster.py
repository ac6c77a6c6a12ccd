"""A real local Ray cluster: ``ray start --head`` on loopback, a driver connecting
with ``ray.init(address=...)`` in a subprocess, a small NCPScheduler sweep, then the
head is stopped and its processes are checked to be gone.

Loopback only. On Linux, Ray turns ``127.0.0.1``/``localhost`` into the machine's
routable IP wherever it resolves a user-given address (``--node-ip-address``, the
``address`` of ``ray.init`` and ``_node_ip_address``: ``resolve_ip_for_localhost`` in
``ray/_private/services.py``), unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` turns
multi-node support off (``ray_constants.ENABLE_RAY_CLUSTER``), in which case
``get_node_ip_address`` returns the loopback address. The head and the driver both
run with that variable, so every address stays 127.0.0.1.

The cluster is isolated from other Ray instances on the machine: its own free GCS
and client-server ports, its own temp dir, its own auth token (``RAY_AUTH_MODE=token``
with ``RAY_AUTH_TOKEN``, instead of ``~/.ray/auth_token``), and it is stopped by
signalling its own ``ray start --block`` process, never with ``ray stop``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.tune", reason="optional dependency: pip install ray[tune]")

import psutil  # noqa: E402  (ray ships it and puts it on sys.path when imported)

ROOT = Path(__file__).parents[2]
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def loopback_env(token: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update({
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep 127.0.0.1 as given
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # SIGTERM tears down at once
    })
    return env


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def inet_addresses(process: psutil.Process) -> set[str]:
    try:
        connections = (process.net_connections(kind="inet")
                       if hasattr(process, "net_connections")
                       else process.connections(kind="inet"))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return set()
    return {a.ip for c in connections for a in (c.laddr, c.raddr) if a}


class LoopbackHead:
    """``ray start --head --block`` on 127.0.0.1 in its own session."""

    def __init__(self) -> None:
        # short: Ray puts unix sockets under <temp_dir>/session_*/sockets (108-byte limit)
        self.temp_dir = tempfile.mkdtemp(prefix="ncpray-")
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.env = loopback_env(secrets.token_hex(32))
        self.log = Path(self.temp_dir) / "head.log"
        self.process: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.seen: dict[int, psutil.Process] = {}

    def start(self, timeout: float = 180.0) -> None:
        command = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            f"--node-ip-address={LOOPBACK}", f"--port={self.port}",
            f"--ray-client-server-port={free_port()}",
            f"--temp-dir={self.temp_dir}", "--num-cpus=2", "--num-gpus=0",
            "--include-dashboard=false", "--disable-usage-stats",
        ]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.temp_dir, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.pgid = self.process.pid
        ready = Path(self.temp_dir) / "ray_current_cluster"  # written once the head is up
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited ({self.process.returncode}):\n"
                                   + self.log.read_text(errors="replace")[-4000:])
            if ready.exists() and ready.read_text().strip():
                self.remember()
                return
            time.sleep(0.5)
        raise RuntimeError("ray start --head did not come up in time:\n"
                           + self.log.read_text(errors="replace")[-4000:])

    def processes(self) -> list[psutil.Process]:
        """The head's live processes: ``ray start`` and its descendants, its process
        group, and anything whose command line names the temp dir."""
        found: dict[int, psutil.Process] = {}
        # the leader's pid (and so the group id) is ours only until it is reaped
        pgid = self.pgid if self.process is not None and self.process.returncode is None else None
        if pgid is not None:
            leader = psutil.Process(pgid)
            found[leader.pid] = leader
            found.update({p.pid: p for p in leader.children(recursive=True)})
        for process in psutil.process_iter(["cmdline"]):
            try:
                mine = pgid is not None and os.getpgid(process.pid) == pgid
            except OSError:
                mine = False
            if mine or self.temp_dir in " ".join(process.info["cmdline"] or ()):
                found[process.pid] = process
        return [p for p in found.values() if alive(p)]

    def remember(self) -> None:
        self.seen.update({p.pid: p for p in self.processes()})

    def socket_ips(self) -> set[str]:
        """IPs of the sockets of the head's processes (remembered for :meth:`stop`)."""
        self.remember()
        return set().union(*(inet_addresses(p) for p in self.seen.values() if alive(p)))

    def stop(self, timeout: float = 60.0) -> list[str]:
        """Stop this head only; returns what was still alive and had to be killed."""
        if self.process is None:
            return []
        self.remember()
        # The leader is not reaped before the end: while it is a zombie its pid, the
        # group id, cannot be reused, so signalling the group reaches only our processes.
        group_is_ours = self.process.returncode is None
        if group_is_ours:
            os.kill(self.process.pid, signal.SIGTERM)  # `ray start --block` stops its node
        deadline = time.time() + timeout
        while group_is_ours and time.time() < deadline and alive(psutil.Process(self.pgid)):
            time.sleep(0.5)
        deadline = time.time() + 120  # bounds slow exits on a busy machine
        while True:
            remaining = {p.pid: p for p in self.seen.values() if alive(p)}
            remaining.update({p.pid: p for p in self.processes()})
            if not remaining or time.time() > deadline:
                break
            time.sleep(0.5)
        leftovers = []
        for process in remaining.values():
            try:
                leftovers.append(" ".join(process.cmdline())[:200])
                process.kill()
            except psutil.NoSuchProcess:
                pass
        if group_is_ours:
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(30)
        self.process = None
        self.pgid = None
        return leftovers


@pytest.fixture
def loopback_head():
    head = LoopbackHead()
    try:
        head.start()
        yield head
    finally:
        head.stop()
        shutil.rmtree(head.temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_sweep_on_a_loopback_ray_start_cluster(loopback_head, tmp_path):
    head = loopback_head
    out, log_path = tmp_path / "report.json", tmp_path / "driver.log"
    cluster_ips: set[str] = set()
    with open(log_path, "wb") as log_file:
        driver = subprocess.Popen(
            [sys.executable, "-m", "tests.integrations.ray_cluster_driver", head.address,
             str(tmp_path / "runs"), str(out)],
            cwd=str(ROOT), env=head.env, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + 1200  # bounds a broken run only
        while driver.poll() is None and time.time() < deadline:
            # the cluster's sockets while the sweep runs (trial workers included)
            cluster_ips |= head.socket_ips()
            time.sleep(0.5)
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)  # still unreaped: the group is ours
            driver.wait()
            pytest.fail("the driver did not finish:\n" + log_path.read_text(errors="replace"))
    log = log_path.read_text(errors="replace")[-4000:]
    assert driver.returncode == 0, log
    report = json.loads(out.read_text())

    # loopback only: the GCS, the node, the driver, the trials and every socket
    assert report["gcs_address"] == head.address
    assert report["driver_node_ip"] == LOOPBACK
    assert report["nodes"] == [{"ip": LOOPBACK, "alive": True}]
    assert {t["node_ip"] for t in report["trials"]} == {LOOPBACK}
    assert report["driver_socket_ips"] and all(map(is_loopback, report["driver_socket_ips"]))
    cluster_ips |= head.socket_ips()
    assert cluster_ips and all(map(is_loopback, cluster_ips)), cluster_ips

    # the sweep: every trial ended, the scheduler stopped some, the best one is complete
    assert report["resources"] == {"cpu": 1.0}
    assert report["num_results"] == 8 and not report["errors"], log
    iterations = [t["iterations"] for t in report["trials"]]
    assert all(1 <= i <= 8 for i in iterations)
    assert min(iterations) < 8
    assert report["best"] == {"quality": 0.9, "iterations": 8}
    assert report["state_path_written"]

    # stopping the head leaves none of its processes behind
    assert head.processes()
    leftovers = head.stop()
    assert leftovers == []
    assert head.processes() == []
    assert not any(alive(p) for p in head.seen.values())
