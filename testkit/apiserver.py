"""Stop and start the kube-apiserver of one local cluster, for tests of what the operator does while it is away.

kwokctl 0.7 stops and starts whole clusters only. With `--runtime binary` each component is a process whose pid
kwokctl keeps in `<cluster dir>/pids/<component>.pid` (and kills from there on `kwokctl delete cluster`), its
output going to `<cluster dir>/logs/<component>.log`. `KwokApiServer` reads the running kube-apiserver's command
line, environment and working directory from /proc, kills it, and starts the same command again, detached (as
kwokctl does: a session of its own, its parent gone, reaped by init), writing the new pid back into the pid file
so that `kwokctl delete cluster` still stops it.

Only the processes of the cluster asked for are ever touched: the pid file is that cluster's, and the process it
names must be running that cluster's own copy of the binary (`<cluster dir>/bin/<component>`); anything else
(another worker's cluster, a pid reused after a crash) is refused.

Two things other clusters on the machine need protecting from:
- kwokctl picks a new cluster's ports by trying which ones it can listen on (the binary runtime records none of
  its clusters' ports), so a port our API server leaves free while it is down can be taken by a cluster being
  created meanwhile (seen: another session's etcd took it within the second, and our API server could not come
  back). While the server is down, this holds `<KWOK_WORKDIR>/create.lock`, which hack/cluster-up.sh takes around
  every `kwokctl create cluster`.
- The cluster's own clients (kube-controller-manager, kube-scheduler, kwok-controller) retry a lost connection
  with client-go's reflector backoff: 0.8 s doubling to 30 s (and up to twice that with its jitter) with every
  failed attempt, forgotten only after 2 minutes without one. Left running through a few restarts they took 30-60 s
  to see a new Deployment, in whichever test came next. They are frozen (SIGSTOP) while the API server is down and
  thawed once it is ready: each reconnects once per restart, never in a loop against a closed port. Only the
  operator under test sees the outage as it is.
- kube-controller-manager exits once it cannot renew its leader lease for 10 s; `revive` starts any component
  that died again, from the command line it had when it ran.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import httpx

APISERVER = "kube-apiserver"
CLIENTS = ("kube-controller-manager", "kube-scheduler", "kwok-controller")  # the cluster's own API clients
COMPONENTS = ("etcd", APISERVER, *CLIENTS)


class NotOurProcess(RuntimeError):
    """A pid file that does not name a running process of this cluster's component."""


@dataclass(frozen=True)
class Command:
    """How a process was started: what `/proc/<pid>` says of it."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path

    def flag(self, name: str) -> str | None:
        """The value of `--name=value`, if given."""
        prefix = f"--{name}="
        return next((arg.removeprefix(prefix) for arg in self.argv if arg.startswith(prefix)), None)

    def with_flags(self, **flags: str | None) -> Command:
        """The same command with `--name=value` set (added or replaced) for each flag, removed where None; the
        Python names' underscores are the flags' dashes."""
        wanted = {name.replace("_", "-"): value for name, value in flags.items()}
        kept = [a for a in self.argv[1:] if a.split("=", 1)[0].removeprefix("--") not in wanted]
        added = [f"--{name}={value}" for name, value in wanted.items() if value is not None]
        return replace(self, argv=(self.argv[0], *kept, *added))


def _read_nul_separated(path: Path) -> list[str]:
    return [part.decode(errors="surrogateescape") for part in path.read_bytes().split(b"\0") if part]


def running(pid: int) -> bool:
    """Whether any thread of `pid` still runs. A killed process's main thread can be a zombie while its other
    threads are still exiting, its sockets still open (a Go server's port is not free yet); once all are gone, the
    zombie waits only for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    zombie = stat.rsplit(")", 1)[1].split()[0] == "Z"  # the state follows the command name in parentheses
    return not zombie or threads > 1


def listening(port: int) -> bool:
    """Whether any socket of the machine listens on TCP `port` (/proc/net/tcp and tcp6: state 0A is LISTEN)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines)  # the header
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


class KwokApiServer:
    """The kube-apiserver (and, to revive them, the other components) of the kwokctl cluster in `cluster_dir`."""

    def __init__(self, cluster_dir: Path) -> None:
        self.cluster_dir = cluster_dir
        self.log_path = self._log(APISERVER)
        self._pki = cluster_dir / "pki"
        # <KWOK_WORKDIR>/clusters/<name>: the lock hack/cluster-up.sh creates clusters under.
        self._create_lock = cluster_dir.parent.parent / "create.lock"
        self._lock: IO[bytes] | None = None
        self._frozen: list[int] = []
        self.last: Command | None = None  # the command of the API server stopped last

    @classmethod
    def of_kubeconfig(cls, kubeconfig: Path) -> KwokApiServer:
        """kwokctl writes each cluster's kubeconfig into the cluster's directory (hack/lib.sh
        CLUSTER_KUBECONFIG); a kubeconfig found elsewhere is not a local kwok cluster, and nothing is touched."""
        server = cls(kubeconfig.parent)
        if not server._pid_file(APISERVER).exists():
            raise NotOurProcess(f"{kubeconfig} is not in a kwokctl --runtime binary cluster directory")
        return server

    def _pid_file(self, component: str) -> Path:
        return self.cluster_dir / "pids" / f"{component}.pid"

    def _log(self, component: str) -> Path:
        return self.cluster_dir / "logs" / f"{component}.log"

    # --- processes --------------------------------------------------------------------------------------------

    def pid(self, component: str = APISERVER) -> int:
        """The running process of this cluster's `component`; refuses a pid that is not this cluster's binary."""
        pid_file = self._pid_file(component)
        try:
            pid = int(pid_file.read_text().strip())
            argv = _read_nul_separated(Path(f"/proc/{pid}/cmdline"))
        except (FileNotFoundError, ValueError) as exc:
            raise NotOurProcess(f"{pid_file}: no running process") from exc
        binary = self.cluster_dir / "bin" / component
        if not argv or Path(argv[0]) != binary or not running(pid):
            raise NotOurProcess(f"{pid_file}: pid {pid} runs {argv[:1]}, not {binary}")
        return pid

    def command(self, component: str = APISERVER) -> Command:
        pid = self.pid(component)
        environ = _read_nul_separated(Path(f"/proc/{pid}/environ"))
        return Command(
            argv=tuple(_read_nul_separated(Path(f"/proc/{pid}/cmdline"))),
            env=dict(entry.split("=", 1) for entry in environ if "=" in entry),
            cwd=Path(os.readlink(f"/proc/{pid}/cwd")),
        )

    def commands(self) -> dict[str, Command]:
        """The command of every component running now: what `revive` starts again."""
        found = {}
        for component in COMPONENTS:
            with contextlib.suppress(NotOurProcess):
                found[component] = self.command(component)
        return found

    def revive(self, commands: dict[str, Command]) -> list[str]:
        """Start again each component of `commands` whose process is gone (the API server too); their names."""
        revived = []
        for component, command in commands.items():
            try:
                self.pid(component)
            except NotOurProcess:
                if component == APISERVER:
                    self.start(command)
                else:
                    self._spawn(component, command)
                revived.append(component)
        return revived

    @property
    def port(self) -> int:
        command = self.last or self.command()
        found = command.flag("secure-port")
        assert found is not None, f"no --secure-port in {command.argv}"
        return int(found)

    def kill(self, sig: signal.Signals = signal.SIGKILL, *, within: float = 30) -> Command:
        """Stop the API server (SIGKILL by default: a crash, nothing drained) and return once its process is gone;
        its command, to start it again. Cluster creations wait until `start` brought it back (its port is ours)."""
        command = self.command()
        pid = self.pid()
        self._hold_creations()
        self._freeze_clients()
        self.last = command
        os.kill(pid, sig)
        port = int(command.flag("secure-port") or 0)
        deadline = time.monotonic() + within
        while running(pid) or listening(port):  # its port free again: what starting it again needs
            if time.monotonic() > deadline:
                raise AssertionError(f"kube-apiserver {pid} (port {port}) still there {within:.0f}s after {sig.name}")
            time.sleep(0.02)
        return command

    def start(self, command: Command | None = None, *, within: float = 60) -> float:
        """Start `command` (by default the one stopped last) detached, as kwokctl does, appending to the same log;
        return once /readyz answers 200: the seconds that took."""
        command = command or self.last
        assert command is not None, "nothing to start: kill() the API server first, or pass a command"
        started = time.monotonic()
        self._hold_creations()  # a no-op after kill(); otherwise the port may be free now too
        try:
            pid = self._spawn(APISERVER, command)
            self.last = command
            self._wait_ready(pid, within=within)
        finally:
            self._thaw_clients()
            self._release_creations()
        return time.monotonic() - started

    def restart(self, command: Command | None = None, *, down_s: float = 0.0) -> float:
        """Kill, stay down for `down_s`, start again (`command`, by default the same one); the seconds from
        the kill until /readyz answered again."""
        killed_at = time.monotonic()
        stopped = self.kill()
        time.sleep(max(0.0, down_s - (time.monotonic() - killed_at)))
        self.start(command or stopped)
        return time.monotonic() - killed_at

    def _spawn(self, component: str, command: Command) -> int:
        binary = self.cluster_dir / "bin" / component
        assert Path(command.argv[0]) == binary, f"{command.argv[0]} is not this cluster's {component}"
        log = self._log(component)
        with log.open("ab") as out:
            out.write(f"\n===== started by testkit.apiserver: {' '.join(command.argv[1:])} =====\n".encode())
        # A shell that starts the process in the background and exits at once: the process's parent is gone and
        # init reaps it, so it outlives this test process as kwokctl's did, and the pid the shell prints is its own.
        script = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'
        launcher = subprocess.run(
            ["/bin/sh", "-c", script, "sh", str(log), *command.argv],
            env=command.env,
            cwd=command.cwd,
            capture_output=True,
            check=True,
            start_new_session=True,
            text=True,
            timeout=10,
        )
        pid = int(launcher.stdout.strip())
        self._pid_file(component).write_text(str(pid))  # kwokctl's format: the number, no newline
        return pid

    # --- other clusters' creations ----------------------------------------------------------------------------

    def _hold_creations(self, within: float = 300) -> None:
        """Take hack/cluster-up.sh's creation lock (waiting out a creation under way), unless held already."""
        if self._lock is not None:
            return
        lock = self._create_lock.open("ab")
        deadline = time.monotonic() + within
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.close()
                    raise AssertionError(f"{self._create_lock} still held after {within:.0f}s") from None
                time.sleep(0.1)
        self._lock = lock

    def close(self) -> None:
        """Thaw the cluster's clients and let cluster creations go on, whatever state a failed test left."""
        self._thaw_clients()
        self._release_creations()

    def thaw_clients(self) -> None:
        """SIGCONT to the cluster's clients, frozen or not: a session killed while they were frozen (nothing else
        ever thaws them) must not leave a cluster whose controllers never act, for the next session to reuse."""
        for component in CLIENTS:
            with contextlib.suppress(NotOurProcess, ProcessLookupError):
                os.kill(self.pid(component), signal.SIGCONT)

    def _freeze_clients(self) -> None:
        for component in CLIENTS:
            with contextlib.suppress(NotOurProcess, ProcessLookupError):
                pid = self.pid(component)
                os.kill(pid, signal.SIGSTOP)
                self._frozen.append(pid)

    def _thaw_clients(self) -> None:
        frozen, self._frozen = self._frozen, []
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def _release_creations(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # --- readiness --------------------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self._pki / "ca.crt"))
        context.load_cert_chain(str(self._pki / "admin.crt"), str(self._pki / "admin.key"))
        return httpx.Client(base_url=f"https://127.0.0.1:{self.port}", verify=context, timeout=2)

    def _wait_ready(self, pid: int, *, within: float) -> None:
        deadline = time.monotonic() + within
        with self._client() as http:
            while True:
                if not running(pid):
                    # Not left in the pid file: `kwokctl delete cluster` would kill whoever gets that pid next.
                    self._pid_file(APISERVER).unlink(missing_ok=True)
                    raise AssertionError(f"kube-apiserver {pid} exited while starting:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if http.get("/readyz").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise AssertionError(f"kube-apiserver {pid} not ready after {within:.0f}s:\n{self.log_tail()}")
                time.sleep(0.1)

    def get(self, path: str) -> httpx.Response:
        """An admin GET (e.g. /metrics), with the cluster's own client certificate."""
        with self._client() as http:
            return http.get(path)

    def log_tail(self, chars: int = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"
        return text[-chars:]
