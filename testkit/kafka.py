"""A real Apache Kafka broker on loopback for tests: one KRaft node (broker and controller in one process), run from
the jars `make kafka` installs (hack/install-kafka.sh), its storage formatted on first start. Restartable on the
same port and data, as a broker restart in production keeps its log.

Sized for tests: one replica for every internal topic (the group offsets and the transaction state), no initial
group-join delay, and transactions allowed with a single broker."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from testkit.ports import free_port
from testkit.processes import ManagedProcess, read_log

KAFKA_VERSION = "4.1.1"  # hack/versions.env
CACHE = Path(os.environ.get("MODELROLLOUT_CACHE", Path.home() / ".cache" / "modelrollout"))
KAFKA_HOME = CACHE / f"kafka-{KAFKA_VERSION}"
_SERVER_MAIN = "kafka.Kafka"
_STORAGE_MAIN = "kafka.tools.StorageTool"


def _java(main: str, *args: str, options: Sequence[str] = ()) -> list[str]:
    """`options` come after the default heap, so a caller's -Xms/-Xmx win."""
    if not (KAFKA_HOME / ".installed").exists():
        raise RuntimeError(f"Kafka {KAFKA_VERSION} is not installed in {KAFKA_HOME}: run `make kafka`")
    return [
        "java",
        "-Xms256m",
        "-Xmx512m",
        *options,
        f"-Dlog4j2.configurationFile={KAFKA_HOME / 'log4j2.properties'}",
        "-cp",
        str(KAFKA_HOME / "libs" / "*"),
        main,
        *args,
    ]


def _serves(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class KafkaBroker(ManagedProcess):
    def __init__(
        self, work_dir: Path, *, port: int | None = None, ready_within: float = 90, jvm_options: Sequence[str] = ()
    ) -> None:
        self.work_dir = work_dir
        self.port = port or free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.data_dir = work_dir / "kafka-data"
        self.config = work_dir / "server.properties"
        self._ready_within = ready_within
        super().__init__(_java(_SERVER_MAIN, str(self.config), options=jvm_options), name=f"kafka {self.bootstrap}",
                         log_path=work_dir / "kafka.log")  # fmt: skip

    def _write_config(self) -> None:
        self.config.parent.mkdir(parents=True, exist_ok=True)
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
        }
        self.config.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))

    def _format(self) -> None:
        """Format the KRaft storage once; a restart keeps it (and with it every topic and offset)."""
        if (self.data_dir / "meta.properties").exists():
            return
        args = _java(_STORAGE_MAIN, "format", "-t", uuid.uuid4().hex[:22], "-c", str(self.config))
        log = self.work_dir / "kafka-format.log"
        with log.open("wb") as out:
            done = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, check=False, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"formatting Kafka's storage failed ({done.returncode}):\n{read_log(log)}")

    def start(self, *, wait: bool = True) -> None:
        self._write_config()
        self._format()
        super().start(wait=False)
        if wait:
            self._wait_serving()

    def _wait_serving(self) -> None:
        deadline = time.monotonic() + self._ready_within
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(f"{self.name} exited:\n{self.log()}")
            if _serves(self.port) and self._metadata_ok():
                return
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"{self.name} did not serve within {self._ready_within:.0f}s:\n{self.log()}")

    def _metadata_ok(self) -> bool:
        try:
            AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
        except Exception:  # noqa: BLE001 - any failure here means "not yet"
            return False
        return True

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def create_topics(self, topics: dict[str, int], configs: dict[str, dict[str, str]] | None = None) -> None:
        """Create each topic (name -> partitions) with one replica and its `configs` (name -> topic settings), and
        wait until every one exists."""
        admin = self.admin()  # kept until the futures resolve: a collected client cancels them
        made = [
            NewTopic(name, partitions, 1, config=(configs or {}).get(name, {})) for name, partitions in topics.items()
        ]
        futures = admin.create_topics(made)
        for future in futures.values():
            future.result(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = admin.list_topics(timeout=5).topics
            if all(name in listed and len(listed[name].partitions) == n for name, n in topics.items()):
                return
            time.sleep(0.1)
        raise AssertionError(f"topics {sorted(topics)} were not all created within 30s")

    def restart(self, *, graceful: bool = True) -> None:
        """Stop (SIGTERM, or SIGKILL as a crash) and start again on the same port, with the same data."""
        self.stop(graceful=graceful, timeout=60)
        self.start()
