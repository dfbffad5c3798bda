"""The ModelDeployment API (modelrollout.dev/v1alpha1): the single source of truth for the CRD, the operator
and the CLI."""

from modelrollout.api.base import Duration, duration_seconds
from modelrollout.api.resource import API_VERSION, GROUP, KIND, PLURAL, VERSION, ModelDeployment
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import ModelDeploymentStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Duration",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "duration_seconds",
]
