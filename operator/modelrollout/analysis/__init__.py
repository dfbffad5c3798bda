"""Metric analysis: PromQL for builtin and custom metrics, the threshold judge (pure), and providers.

The operator's flow: a tick emits `RequestAnalysis(request)`; the handler calls
`await run_analysis(provider, request, namespace=..., name=..., model=..., scrape_interval_seconds=..., now=...)`
and passes the returned `AnalysisOutcome` to the next tick.

Nothing is re-exported here: importing one module of the package (the kubectl plugin renders A/B results with
`ab_test`) must not import the judges, whose scipy costs ~1.8 s at every start of the plugin.
"""
