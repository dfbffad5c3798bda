"""Steady inference load in a background thread, recording every request, for e2e tests.

The load is open-loop: request i is sent at start + i / rate whatever happened to earlier ones (each request is
its own task on the thread's event loop), so a slow or stuck server shows as latency and failures, not as a
quietly lower rate. Requests carry dataset rows in order (row i % len(rows)), so a test can compare each
answer with the model's known prediction for that row (testkit/models.py).

Open Inference Protocol v2 (`protocol="v2"`, URL .../v2/models/NAME/infer) or the simple `/predict`
(`protocol="predict"`, features named f0..fN-1 as the model server names unnamed features). The answering
version is the router's `x-modelrollout-version` header, or else the body's `model_version`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import httpx

from testkit.models import Dataset
from testkit.waiting import wait_until

VERSION_HEADER = "x-modelrollout-version"
ROLE_HEADER = "x-modelrollout-role"
ENSEMBLE_HEADER = "x-modelrollout-ensemble"  # an ensemble's members and how each did, e.g. "stable, b, c=timeout"
Protocol = Literal["v2", "predict"]
Headers = Mapping[str, str] | Callable[[int], Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request: when it was sent (wall clock, to line up with Prometheus), what came back."""

    index: int
    row: int
    sent_at: float
    latency_s: float
    status: int | None  # None: no HTTP answer (connection refused, timeout, ...)
    version: str | None = None
    role: str | None = None
    prediction: Any = None
    error: str | None = None
    ensemble: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class LoadSummary:
    outcomes: tuple[Outcome, ...]

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def by_code(self) -> Counter[int | None]:
        return Counter(o.status for o in self.outcomes)

    @property
    def by_version(self) -> Counter[str | None]:
        """Answers per version, successful ones only."""
        return Counter(o.version for o in self.outcomes if o.ok)

    @property
    def by_role(self) -> Counter[str | None]:
        return Counter(o.role for o in self.outcomes if o.ok)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def share(self, version: str) -> float:
        """Share of the successful answers that came from `version`."""
        answered = sum(self.by_version.values())
        return self.by_version[version] / answered if answered else 0.0

    @property
    def error_share(self) -> float:
        return len(self.failures) / self.total if self.total else 0.0

    def mismatches(self, expected: Mapping[str, Sequence[Any]], *, tolerance: float = 0.0) -> list[Outcome]:
        """Successful answers whose prediction differs (by more than `tolerance`, for numbers) from
        `expected[version][row]`; versions not in `expected` are not checked."""
        found = []
        for o in self.outcomes:
            predictions = expected.get(o.version) if o.ok and o.version is not None else None
            if predictions is not None and not _same(o.prediction, predictions[o.row], tolerance):
                found.append(o)
        return found

    def last(self, count: int) -> LoadSummary:
        """Only the `count` requests sent last."""
        return LoadSummary(self.outcomes[-count:] if count else ())

    def since(self, sent_at: float) -> LoadSummary:
        """Only the requests sent at or after `sent_at` (wall clock, time.time())."""
        return LoadSummary(tuple(o for o in self.outcomes if o.sent_at >= sent_at))

    def describe(self, *, failures: int = 5) -> str:
        shown = "; ".join(f"#{o.index} {o.status} {o.error or ''}".strip() for o in self.failures[:failures])
        text = f"{self.total} requests, codes {dict(self.by_code)}, versions {dict(self.by_version)}"
        return text + (f", first failures: {shown}" if shown else "")


class Load:
    """`rate` requests per second to `url` until stopped; a context manager (start on enter, stop on exit)."""

    def __init__(
        self,
        url: str,
        dataset: Dataset,
        *,
        rate: float = 50,
        protocol: Protocol = "v2",
        headers: Headers | None = None,
        timeout_s: float = 10,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.url = url
        self.dataset = dataset
        self.rate = rate
        self.protocol = protocol
        self.timeout_s = timeout_s
        self._headers = headers
        self._on_outcome = on_outcome  # called for every finished request, on the load's thread
        self._bodies = [self._body(row) for row in dataset.rows.tolist()]
        self._outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None

    def _body(self, row: list[float]) -> dict[str, Any] | list[dict[str, float]]:
        if self.protocol == "predict":
            return [{f"f{i}": value for i, value in enumerate(row)}]
        return {"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}

    # --- life cycle ---------------------------------------------------------------------------------------

    def start(self) -> Load:
        if self._thread is not None:
            raise RuntimeError("the load is already running")
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name="load", daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    def stop(self) -> LoadSummary:
        """Stop sending, wait for the requests in flight (at most timeout_s), and summarise everything."""
        thread, self._thread = self._thread, None
        if thread is not None and self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            thread.join(self.timeout_s + 10)
        if self._error is not None:
            raise RuntimeError(f"the load generator failed: {self._error!r}") from self._error
        return self.summary()

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- reading ------------------------------------------------------------------------------------------

    @property
    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes)

    def summary(self) -> LoadSummary:
        return LoadSummary(tuple(sorted(self.outcomes, key=lambda o: o.index)))

    def wait_for(self, count: int, *, within: float = 60) -> LoadSummary:
        """Block until `count` requests have completed in total; the summary then."""

        def done() -> bool:
            if self._thread is None or not self._thread.is_alive():
                raise AssertionError(f"the load is not running ({self._error!r}): {self.summary().describe()}")
            return len(self.outcomes) >= count

        wait_until(done, within=within, what=lambda: f"{count} requests done: {self.summary().describe()}")
        return self.summary()

    def wait_seconds(self, seconds: float) -> LoadSummary:
        """Let the load run `seconds` more; the summary of the requests sent in that time."""
        begin = time.time()
        time.sleep(seconds)
        return self.summary().since(begin)

    # --- the thread ---------------------------------------------------------------------------------------

    def _run(self, started: threading.Event) -> None:
        try:
            asyncio.run(self._main(started))
        except BaseException as exc:  # noqa: BLE001 - reported by stop() in the test's thread
            self._error = exc
            started.set()

    async def _main(self, started: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        # Idle connections are dropped well before uvicorn closes them (5 s): reusing one just as the server closes
        # it fails the request with a ReadError that says nothing about the server under test.
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=2.0)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits) as client:
            started.set()
            in_flight: set[asyncio.Task[None]] = set()
            begin = time.monotonic()
            index = 0
            while not self._stopping.is_set():
                task = asyncio.create_task(self._one(client, index))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                index += 1
                delay = begin + index / self.rate - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=max(delay, 0))
            if in_flight:
                await asyncio.wait(in_flight, timeout=self.timeout_s + 5)

    async def _one(self, client: httpx.AsyncClient, index: int) -> None:
        row = index % len(self._bodies)
        headers = self._headers(index) if callable(self._headers) else self._headers
        sent_at, start = time.time(), time.perf_counter()
        try:
            response = await client.post(self.url, json=self._bodies[row], headers=headers)
        except httpx.HTTPError as exc:
            outcome = Outcome(
                index, row, sent_at, time.perf_counter() - start, None, error=f"{type(exc).__name__}: {exc}"
            )
        else:
            outcome = self._read(index, row, sent_at, time.perf_counter() - start, response)
        with self._lock:
            self._outcomes.append(outcome)
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    def _read(self, index: int, row: int, sent_at: float, latency: float, response: httpx.Response) -> Outcome:
        version = response.headers.get(VERSION_HEADER)
        role = response.headers.get(ROLE_HEADER)
        body: Any = None
        with contextlib.suppress(ValueError):
            body = response.json()
        if not 200 <= response.status_code < 300 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else response.text[:200]
            return Outcome(index, row, sent_at, latency, response.status_code, version, role, error=str(error))
        return Outcome(
            index,
            row,
            sent_at,
            latency,
            response.status_code,
            version or body.get("model_version"),
            role,
            prediction=_prediction(body),
            ensemble=response.headers.get(ENSEMBLE_HEADER),
        )


def _same(answer: Any, expected: Any, tolerance: float) -> bool:
    if isinstance(answer, int | float) and isinstance(expected, int | float):
        return abs(answer - expected) <= tolerance
    return bool(answer == expected)


def _prediction(body: Mapping[str, Any]) -> Any:
    if "predictions" in body:  # /predict
        return body["predictions"][0]
    for output in body.get("outputs", []):
        if output.get("name") == "predict":
            return output["data"][0]
    return None
