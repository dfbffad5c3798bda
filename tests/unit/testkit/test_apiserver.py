"""testkit.apiserver's safety and bookkeeping, without a cluster: it touches only the process a cluster's pid file
names when that process runs the cluster's own binary, a zombie counts as gone, a freed port as free, and a
command line keeps everything but the flags asked to change."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testkit.apiserver import Command, KwokApiServer, NotOurProcess, listening, running


def _command(*args: str) -> Command:
    return Command(argv=("/c/bin/kube-apiserver", *args), env={"A": "1"}, cwd=Path("/c"))


def test_with_flags_replaces_adds_and_removes_keeping_the_rest_in_order() -> None:
    command = _command("--etcd-prefix=/registry", "--max-requests-inflight=0", "--enable-priority-and-fairness=false")
    changed = command.with_flags(enable_priority_and_fairness="true", max_requests_inflight=None, request_timeout="20s")
    assert changed.argv == (
        "/c/bin/kube-apiserver",
        "--etcd-prefix=/registry",
        "--enable-priority-and-fairness=true",
        "--request-timeout=20s",
    )
    assert changed.flag("request-timeout") == "20s"
    assert changed.flag("max-requests-inflight") is None
    assert (changed.env, changed.cwd) == (command.env, command.cwd)


def test_a_pid_file_naming_another_binary_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pids").mkdir()
    (tmp_path / "kubeconfig.yaml").write_text("")
    (tmp_path / "pids" / "kube-apiserver.pid").write_text(str(os.getpid()))  # this test's python: not ours to kill
    server = KwokApiServer.of_kubeconfig(tmp_path / "kubeconfig.yaml")
    with pytest.raises(NotOurProcess, match="not"):
        server.pid()
    assert server.commands() == {}


def test_a_kubeconfig_outside_a_kwok_cluster_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotOurProcess):
        KwokApiServer.of_kubeconfig(tmp_path / "kubeconfig.yaml")


def test_an_exited_unreaped_child_is_not_running() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while running(child.pid):  # a zombie until waited for: gone as far as its sockets are concerned
            assert time.monotonic() < deadline, "the exited child still counts as running"
            time.sleep(0.01)
        assert Path(f"/proc/{child.pid}").exists(), "reaped already: the zombie case was not exercised"
    finally:
        child.wait()
    assert running(os.getpid())
    assert not running(child.pid)


def test_listening_sees_a_listening_socket_and_not_a_closed_one() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert not listening(port), "bound is not listening"
        sock.listen()
        assert listening(port)
    assert not listening(port)
