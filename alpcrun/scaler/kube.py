"""The scale subresource of a Deployment, through the official ``kubernetes`` client."""

from __future__ import annotations

from typing import Any, Protocol


class ScaleTarget(Protocol):
    """Something whose replica count can be read and set (blocking calls)."""

    def get_replicas(self) -> int:
        """The replica count asked of the target now."""
        ...

    def set_replicas(self, replicas: int) -> None:
        """Ask the target for ``replicas`` replicas."""
        ...


class DeploymentScale:
    """``apps/v1`` Deployment ``/scale``: the only API the scaler's Role allows."""

    def __init__(self, api: Any, *, name: str, namespace: str) -> None:
        """Args: api: a ``kubernetes.client.AppsV1Api``; name/namespace: the Deployment."""
        self.api = api
        self.name = name
        self.namespace = namespace

    def get_replicas(self) -> int:
        """``spec.replicas`` of the Deployment's scale."""
        scale = self.api.read_namespaced_deployment_scale(self.name, self.namespace)
        return int(scale.spec.replicas or 0)

    def set_replicas(self, replicas: int) -> None:
        """Patch ``spec.replicas`` of the Deployment's scale."""
        self.api.patch_namespaced_deployment_scale(
            self.name, self.namespace, {"spec": {"replicas": replicas}}
        )


def apps_api(*, kubeconfig: str | None = None, host: str | None = None) -> Any:
    """An ``AppsV1Api``: in-cluster credentials, else ``kubeconfig``, else ``host`` (tests).

    Raises:
        ImportError: the ``kubernetes`` package (extra ``alpcrun[k8s]``) is not installed.
    """
    from kubernetes import client
    from kubernetes import config as kube_config

    config: Any = kube_config  # the package's loaders are untyped

    if host is not None:
        configuration = client.Configuration()
        configuration.host = host
        return client.AppsV1Api(client.ApiClient(configuration))
    if kubeconfig is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
    else:
        config.load_kube_config(config_file=kubeconfig)
    return client.AppsV1Api()
