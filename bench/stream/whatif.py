"""`modelserver stream` with one producer setting changed, for bench/stream/run.py's what-if row (not what ships):
`RETRY_BACKOFF_MS=100 python bench/stream/whatif.py stream --bootstrap-servers ...`.

librdkafka waits retry.backoff.ms (its default 100 ms; modelserver's producer sets 10) before retrying a request
the broker refused as retriable. A transaction that begins right after the previous one committed is refused so
(CONCURRENT_TRANSACTIONS: the previous one's markers are still being written), so under exactly-once some
batches wait that long between records consumed and offsets committed. This sets it to RETRY_BACKOFF_MS on the
consumer's producer and changes nothing else.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import modelserver.stream.run as stream_run
from modelserver.cli import main
from modelserver.stream.clients import producer_config as shipped
from modelserver.stream.settings import StreamSettings

BACKOFF_MS = int(os.environ["RETRY_BACKOFF_MS"])


def producer_config(settings: StreamSettings) -> dict[str, Any]:
    return {**shipped(settings), "retry.backoff.ms": BACKOFF_MS}


if __name__ == "__main__":
    vars(stream_run)["producer_config"] = producer_config  # the name stream_run's consumer calls
    sys.argv = ["modelserver", *sys.argv[1:]]
    main()
