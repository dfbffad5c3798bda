"""Traffic routers behind one Protocol (`TrafficRouter`): the `service` provider's replica arithmetic and the
`router` provider's ConfigMap document."""

from modelrollout.traffic.base import HeaderMatch, TrafficRouter
from modelrollout.traffic.router import ConfigMapRouter, RouterConfig, parse_configmap_data, to_configmap_data
from modelrollout.traffic.service import ReplicaSplit, selected_roles, split_replicas

__all__ = [
    "ConfigMapRouter",
    "HeaderMatch",
    "ReplicaSplit",
    "RouterConfig",
    "TrafficRouter",
    "parse_configmap_data",
    "selected_roles",
    "split_replicas",
    "to_configmap_data",
]
