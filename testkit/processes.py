"""Real helper processes on loopback for integration and e2e tests: readiness polling, and a
process handle that can be stopped and started again with the same command (same port, same data dir).

Every failure message carries the process's log, because a test that fails on "not ready" is useless without it.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

LOG_TAIL_CHARS = 20_000


def read_log(path: Path, *, tail: int = LOG_TAIL_CHARS) -> str:
    if not path.exists():
        return "(no log written)"
    text = path.read_text(errors="replace")
    return text if len(text) <= tail else f"[... {len(text) - tail} characters cut ...]\n{text[-tail:]}"


def wait_until_answers(
    url: str, process: subprocess.Popen[bytes], log: Path, *, within: float = 60, interval: float = 0.2
) -> None:
    """Poll `url` until it answers 200; fail early, with the log, when `process` exits meanwhile."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited with {process.returncode}:\n{read_log(log)}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(interval)
    raise AssertionError(f"{url} did not answer within {within:.0f}s:\n{read_log(log)}")


def terminate(process: subprocess.Popen[bytes], *, graceful: bool = True, timeout: float = 20) -> int:
    """SIGTERM (or SIGKILL) and wait; a process that ignores SIGTERM for `timeout` seconds is killed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@contextlib.contextmanager
def running(args: list[str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` (output into `log`) until the block ends; enter once `ready_url` answers 200."""
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_answers(ready_url, process, log)
        yield process
    finally:
        terminate(process)


class ManagedProcess:
    """One command that can be started, stopped and started again; each start appends to the same log with a
    marker line, so a failure message shows every incarnation. `start()` returns once `ready_url` answers 200
    (immediately when there is none). Use as a context manager to stop it whatever happens."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        name: str,
        log_path: Path,
        ready_url: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready_within: float = 60,
    ) -> None:
        self.args = list(args)
        self.name = name
        self.log_path = log_path
        self.ready_url = ready_url
        self.ready_within = ready_within
        self._env = {**os.environ, **(env or {})}
        self._cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, wait: bool = True) -> None:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== {self.name} start #{self.starts}: {' '.join(self.args)} =====\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, env=self._env, cwd=self._cwd
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, *, within: float | None = None) -> None:
        if self.ready_url is None:
            return
        try:
            wait_until_answers(self.ready_url, self.process, self.log_path, within=within or self.ready_within)
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{self.name} did not become ready: {exc}") from None

    def stop(self, *, graceful: bool = True, timeout: float = 20) -> int | None:
        """SIGTERM (graceful) or SIGKILL (as a crash would); the exit code, or None if it was not running."""
        process, self._process = self._process, None
        if process is None:
            return None
        return terminate(process, graceful=graceful, timeout=timeout)

    def restart(self, *, graceful: bool = True) -> None:
        self.stop(graceful=graceful)
        self.start()

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._process

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def log(self, *, tail: int = LOG_TAIL_CHARS) -> str:
        return read_log(self.log_path, tail=tail)

    def describe(self) -> str:
        """For failure messages: what it is, whether it runs, and the end of its log."""
        state = f"running (pid {self.pid})" if self.alive else "not running"
        return f"--- {self.name}: {state}, log {self.log_path} ---\n{self.log()}"

    def __enter__(self) -> ManagedProcess:
        if not self.alive:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class OutputReader:
    """A child's output as text, read as it comes. Chunks are decoded incrementally: a pipe read can end inside a
    multi-byte character (rich's box drawing is three bytes), and decoding each chunk on its own would raise there
    and lose the chunk."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.ended = False

    async def until(self, wanted: str, *, within: float) -> None:
        """Read until `wanted` has appeared (in everything read so far); fail after `within` s or at end of output."""
        deadline = time.monotonic() + within
        while wanted not in self.text:
            if self.ended:
                raise AssertionError(f"the output ended without {wanted!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {within:.0f}s waiting for {wanted!r} in the output")
            try:
                chunk = await asyncio.wait_for(self._stream.read(4096), left)
            except TimeoutError:
                continue
            self.ended = not chunk
            self.text += self._decoder.decode(chunk, final=self.ended)
