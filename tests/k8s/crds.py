"""Schemas of the custom resources the chart may render (the fields it uses, from the CRDs).

kubernetes-validate knows only built-in kinds; these cover KEDA's ScaledObject, the Prometheus
operator's ServiceMonitor and cert-manager's Certificate well enough to catch a misspelt or
misplaced field.
"""

from __future__ import annotations

from typing import Any

_META = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
_STR = {"type": "string"}
_INT = {"type": "integer"}


def _obj(props: dict[str, Any], *required: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(required),
        "additionalProperties": False,
    }


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _obj(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _META,
            "spec": spec,
        },
        "apiVersion",
        "kind",
        "metadata",
        "spec",
    )


SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": _resource(
        "keda.sh/v1alpha1",
        "ScaledObject",
        _obj(
            {
                "scaleTargetRef": _obj({"apiVersion": _STR, "kind": _STR, "name": _STR}, "name"),
                "minReplicaCount": _INT,
                "maxReplicaCount": _INT,
                "pollingInterval": _INT,
                "cooldownPeriod": _INT,
                "advanced": _obj(
                    {"horizontalPodAutoscalerConfig": _obj({"behavior": {"type": "object"}})}
                ),
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": _obj(
                        {
                            "type": {"const": "prometheus"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "metadata": {
                                "type": "object",
                                "required": ["serverAddress", "query", "threshold"],
                                "additionalProperties": _STR,
                            },
                        },
                        "type",
                        "metadata",
                    ),
                },
            },
            "scaleTargetRef",
            "triggers",
        ),
    ),
    "ServiceMonitor": _resource(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        _obj(
            {
                "selector": _obj({"matchLabels": {"type": "object"}}),
                "endpoints": {
                    "type": "array",
                    "items": _obj({"port": _STR, "path": _STR, "interval": _STR}, "port"),
                },
            },
            "selector",
            "endpoints",
        ),
    ),
    "Certificate": _resource(
        "cert-manager.io/v1",
        "Certificate",
        _obj(
            {
                "secretName": _STR,
                "duration": _STR,
                "renewBefore": _STR,
                "issuerRef": _obj({"name": _STR, "kind": _STR, "group": _STR}, "name"),
                "dnsNames": {"type": "array", "items": _STR},
                "usages": {"type": "array", "items": _STR},
            },
            "secretName",
            "issuerRef",
        ),
    ),
}
