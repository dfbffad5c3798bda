"""`make bench-operator`: the operator (a real `modelrollout run`) against a real API server at 100-3,000
ModelDeployments, before and after the scale work. The pure parts (`mix`, `stats`, `ticks`, `report`) are unit
tested in tests/unit/bench/operator; the rest drives processes and the cluster (`cluster`, `kube`, `run`)."""
