"""`modelserver batch`: score a data-lake input (parquet, csv or jsonl; a file, a directory or a prefix; local or
S3) with one model, in record batches, into an output that becomes visible all at once.

- settings: what a run is told (flags or MODELSERVER_* variables, the model ones shared with `serve`);
- uris: the run's URI templates and the filesystem behind a URI;
- sources: which input files a run (or one shard of it) reads, in record batches;
- validate: the input schema against the model's signature, and per-record checks;
- scoring: one record batch -> output columns (+ rejected records);
- sketch: the score distribution in bounded memory (DDSketch, a known relative error);
- commit: parts, then the manifest last (the commit); stale parts of earlier attempts removed after it;
- metrics: the run's counters pushed to a Pushgateway;
- run: the whole, its exit code and its termination message (what the operator reads).
"""
