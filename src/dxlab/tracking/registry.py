"""Quality gates and the MLflow model registry: aliases `champion` / `challenger`, never deprecated stages."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CHAMPION = "champion"
METRIC_TAG = "metric."


def metric_value(metrics: Mapping, name: str):
    stratum, metric = name.split(".", 1)
    return (metrics.get(stratum) or {}).get(metric)


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # why it failed (empty when it passed)
    checks: list[str] = field(default_factory=list)  # every check, passed or not, for the log

    def as_dict(self) -> dict:
        return {"passed": self.passed, "reasons": self.reasons, "checks": self.checks}


def check_gates(metrics: Mapping, minimum: Mapping[str, float] | None = None,
                maximum: Mapping[str, float] | None = None, champion: Mapping[str, float] | None = None,
                no_regression: Sequence[str] = (), tolerance: float = 0.0) -> GateDecision:
    """Compare one model's metrics ({stratum: {metric: value}}) with the gates and the champion's metrics."""
    reasons, checks = [], []
    for name, bound in (minimum or {}).items():
        value = metric_value(metrics, name)
        ok = value is not None and value >= bound
        checks.append(f"{name} = {value} >= {bound}: {'ok' if ok else 'FAIL'}")
        if not ok:
            reasons.append(f"{name} {value} below the minimum {bound}")
    for name, bound in (maximum or {}).items():
        value = metric_value(metrics, name)
        ok = value is not None and value <= bound
        checks.append(f"{name} = {value} <= {bound}: {'ok' if ok else 'FAIL'}")
        if not ok:
            reasons.append(f"{name} {value} above the maximum {bound}")
    for name in no_regression if champion else ():
        value, best = metric_value(metrics, name), champion.get(name)
        if best is None:
            continue
        ok = value is not None and value >= best - tolerance
        checks.append(f"{name} = {value} vs champion {best} (tolerance {tolerance}): {'ok' if ok else 'FAIL'}")
        if not ok:
            reasons.append(f"{name} {value} regresses from the champion's {best} by more than {tolerance}")
    return GateDecision(not reasons, reasons, checks)


def champion_metrics(client, name: str) -> dict[str, float] | None:
    """The metrics recorded on the current champion version's tags, or None when there is no champion."""
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except Exception:  # noqa: BLE001 - MLflow raises a generic MlflowException when alias or model is missing
        return None
    return {k[len(METRIC_TAG):]: float(v) for k, v in version.tags.items() if k.startswith(METRIC_TAG)}


def register(client, model_uri: str, name: str, metrics: Mapping, decision: GateDecision, alias: str | None,
             tags: Mapping[str, str] | None = None):
    """Register a model version with its metrics and gate decision as tags, and point `alias` at it."""
    import mlflow

    version = mlflow.register_model(model_uri, name)
    flat = {f"{METRIC_TAG}{s}.{m}": v for s, values in metrics.items() for m, v in (values or {}).items()
            if isinstance(v, (int, float)) and v is not None}
    for key, value in {**flat, "gates.passed": str(decision.passed),
                       "gates.reasons": json.dumps(decision.reasons)[:4900], **(tags or {})}.items():
        client.set_model_version_tag(name, version.version, key, str(value))
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return version


def promote(client, name: str, version: str | int, alias: str = CHAMPION) -> None:
    """Point an alias (default `champion`) at a registered version, as a person would in the MLflow UI."""
    client.get_model_version(name, str(version))  # fails clearly when the version does not exist
    client.set_registered_model_alias(name, alias, str(version))
