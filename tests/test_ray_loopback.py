"""The local Ray cluster of the tests and the benchmark (biaslab.sweep.ray_cluster.local_cluster)
is out of reach of other machines: every socket its processes listen on, and every connection of
a driver that joins it, is on loopback, as the operating system lists them (psutil).

A Ray head runs any code it is sent, and this one has no token: bound to the machine's network
address (Ray's default on Linux), anyone who reaches that address could run code as the user.
"""

import ipaddress
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections import namedtuple

import psutil
import pytest

from biaslab.sweep import ray_cluster as rs
from tests.conftest import ROOT

# the sweep's own connect (one GPU per experiment), then one task on each node, so that both
# raylets start a worker; it stays connected until its stdin closes
DRIVER = """
import os, sys
from biaslab.sweep import ray_cluster as rs
ray = rs.connect(sys.argv[1], 1)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
pid = ray.remote(num_gpus=1)(lambda: os.getpid())
nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
pids = ray.get([pid.options(scheduling_strategy=On(node, soft=False)).remote()
                for node in nodes])
print("ready", len(set(pids)), flush=True)
sys.stdin.read()
ray.shutdown()
"""


def exposed(conns) -> list[str]:
    """``ip:port`` of each socket of ``conns`` (psutil's) that another machine could reach:
    a TCP socket listening, or a UDP one bound and not connected, on an address other than
    loopback (0.0.0.0 and :: are every address)."""
    out = []
    for conn in conns:
        listening = (conn.status == psutil.CONN_LISTEN if conn.type == socket.SOCK_STREAM
                     else not conn.raddr)
        if listening and not loopback(conn.laddr.ip):
            out.append(f"{conn.laddr.ip}:{conn.laddr.port}")
    return out


def loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    # a dual-stack socket's IPv4 peer reads ::ffff:127.0.0.1, which Python 3.11 calls no loopback
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def sockets(procs) -> dict[str, list]:
    """Each live process's inet sockets, by ``pid name``."""
    out = {}
    for proc in procs:
        try:
            out[f"{proc.pid} {proc.name()}"] = proc.net_connections("inet")
        except psutil.NoSuchProcess:
            pass
    return out


def lines_of(proc: subprocess.Popen) -> queue.Queue:
    """The lines ``proc`` prints, as they come; "" once it has ended."""
    lines = queue.Queue()

    def read():
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for_ready(lines: queue.Queue, timeout: float) -> tuple[bool, str]:
    """Whether the driver printed its ``ready`` line within ``timeout`` seconds, and what it
    printed up to then (without it: a traceback, or Ray's warnings as it retries)."""
    seen, end_at = [], time.monotonic() + timeout
    while (left := end_at - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if not line:  # the driver ended
            break
        seen.append(line)
        if line.startswith("ready"):
            return True, "".join(seen)
    return False, "".join(seen)


def stop(driver: subprocess.Popen, timeout: float) -> None:
    """Closes the driver's stdin (it leaves the cluster); kills it if it is still there after
    ``timeout`` seconds."""
    driver.stdin.close()
    try:
        driver.wait(timeout)
    except subprocess.TimeoutExpired:
        driver.kill()
        driver.wait()


Addr = namedtuple("Addr", "ip port")
Conn = namedtuple("Conn", "type laddr raddr status")  # the fields of psutil's that are read


def test_the_check_sees_a_socket_open_to_the_network():
    tcp, udp, listen, none = socket.SOCK_STREAM, socket.SOCK_DGRAM, psutil.CONN_LISTEN, "NONE"
    conns = [Conn(tcp, Addr("0.0.0.0", 1), (), listen), Conn(tcp, Addr("::", 2), (), listen),
             Conn(tcp, Addr("192.0.2.2", 3), (), listen), Conn(udp, Addr("0.0.0.0", 4), (), none),
             Conn(tcp, Addr("::ffff:192.0.2.2", 5), (), listen),
             # loopback, or not listening: a connection from the machine's address, a UDP
             # socket connected to a peer
             Conn(tcp, Addr("127.0.0.1", 6), (), listen), Conn(tcp, Addr("::1", 7), (), listen),
             Conn(tcp, Addr("::ffff:127.0.0.1", 8), (), listen),
             Conn(udp, Addr("127.0.0.1", 9), (), none),
             Conn(tcp, Addr("192.0.2.2", 10), Addr("192.0.2.9", 80), "ESTABLISHED"),
             Conn(udp, Addr("192.0.2.2", 11), Addr("192.0.2.9", 53), none)]
    assert exposed(conns) == ["0.0.0.0:1", ":::2", "192.0.2.2:3", "0.0.0.0:4",
                              "::ffff:192.0.2.2:5"]


@pytest.mark.slow
def test_the_local_cluster_and_its_driver_stay_on_loopback():
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    cluster, driver = rs.local_cluster(), None
    try:
        env = {**os.environ, **rs.LOCAL_ENV, "PYTHONPATH": str(ROOT)}
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, cluster.address], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        lines = lines_of(driver)
        ready, out = wait_for_ready(lines, 180)
        if not ready:
            stop(driver, 30)
            raise AssertionError(f"the driver did not join {cluster.address}: "
                                 f"{(out + wait_for_ready(lines, 10)[1])[-3000:]}")
        assert out.split()[-2:] == ["ready", "2"], out  # a worker on each node
        started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        found = sockets(started)
        servers = [proc for proc in found if proc.endswith((" gcs_server", " raylet"))]
        assert len(servers) == 3, list(found)  # the head's GCS, a raylet on each node
        assert all(any(c.status == psutil.CONN_LISTEN for c in found[proc]) for proc in servers)
        open_ = {proc: exposed(conns) for proc, conns in found.items() if exposed(conns)}
        assert not open_, f"listening beyond loopback: {open_}"
        peers = [c.raddr.ip for c in psutil.Process(driver.pid).net_connections("inet")
                 if c.raddr]
        assert peers and all(loopback(ip) for ip in peers), peers
        assert cluster.address.split(":")[0] == "127.0.0.1", cluster.address
    finally:
        if driver is not None and driver.returncode is None:
            stop(driver, 60)
        cluster.shutdown()
