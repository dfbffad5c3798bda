"""`modelserver route`: the reverse proxy behind the operator's `router` traffic provider.

It reads the routing document the operator writes (ConfigMap `<name>-router`, key `router.json`; or a file),
splits requests between the stable and canary model servers by weight or header, mirrors a share to the canary
as shadow calls whose answers it compares with stable's, and exports modelrouter_* metrics.

Modules: config (the document), snapshot (the immutable routing a request uses), reload (swapping it),
sources (ConfigMap watch, file poll), proxy (upstream calls, retry, shadows), shadow (comparing answers),
metrics, app (ASGI), settings, server (process).
"""
