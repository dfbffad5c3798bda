"""Leader election: one replica runs the operator's writers, the others wait as standbys (`election`: the pure
rules; `lease`: the Lease on the API server; `elector`: the loop that keeps or takes it)."""
