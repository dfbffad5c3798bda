"""A run's share of the records by key (a canary by key): a record belongs to it when its key's bucket, the one our
router gives a user with that key (modelrollout_contract.sticky), is in the run's [from, to). Records of other
shares are dropped as they are read, before any check: a run neither validates nor counts them, so the shares of
one input add up to its records."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from modelrollout_contract.batch import KeyRange
from modelrollout_contract.sticky import buckets_of


def buckets(column: pa.Array | pa.ChunkedArray) -> np.ndarray[tuple[int], np.dtype[np.int32]]:
    """Each record's bucket. The column is converted to Python once (no scalar per row); the CRC-32 of each key
    is then the per-record cost."""
    return np.fromiter(buckets_of(column.to_pylist()), dtype=np.int32, count=len(column))


def select(batch: pa.RecordBatch, keys: KeyRange) -> pa.RecordBatch:
    """The records of `batch` whose key is in `keys`, in their order."""
    found = buckets(batch.column(keys.column))
    inside = (found >= keys.start) & (found < keys.end)
    return batch if inside.all() else batch.filter(pa.array(inside))
