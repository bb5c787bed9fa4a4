"""Quality gates and the MLflow model registry: aliases `champion` / `challenger`, never deprecated stages.

Metric names are dotted paths into the evaluate stage's metrics: `<line>.<slice>.<metric>`, e.g.
`case_reports.overall.top1` (real cases, grouped by publication) or `hpo_cohort_test.overall.top3`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CHAMPION = "champion"
METRIC_TAG = "metric."


def metric_value(metrics: Mapping, name: str):
    """The value at a dotted path ('case_reports.overall.top1'); None when any step is missing."""
    node = metrics
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def line_of(name: str) -> str:
    return name.split(".", 1)[0]


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # why it failed (empty when it passed)
    checks: list[str] = field(default_factory=list)  # every check, passed or not, for the log
    not_measured: list[str] = field(default_factory=list)  # lines the gates name that the run did not evaluate

    def as_dict(self) -> dict:
        return {"passed": self.passed, "reasons": self.reasons, "checks": self.checks,
                "not_measured": self.not_measured}


def check_gates(metrics: Mapping, minimum: Mapping[str, float] | None = None,
                maximum: Mapping[str, float] | None = None, champion: Mapping[str, float] | None = None,
                higher_is_better: Sequence[str] = (), lower_is_better: Sequence[str] = (),
                tolerance: float = 0.0) -> GateDecision:
    """Compare one model's metrics (nested: line -> slice -> metric) with the gates and the champion's metrics
    (flat: dotted name -> value). A gate on a line the metrics do not have at all (a source absent from the run)
    is not measured: listed, and failed only when the champion was validated on that line (a model that was never
    measured on real cases does not replace one that was); a missing metric of a measured line fails."""
    reasons, checks, absent = [], [], set()
    champion_lines = {line_of(name) for name in (champion or {})}

    def measured(name: str) -> bool:
        line = line_of(name)
        if line in metrics:
            return True
        if line not in absent and line in champion_lines:
            reasons.append(f"not measured on {line}, which the champion was validated on")
        absent.add(line)
        checks.append(f"{name}: not measured (no {line} rows in this run)")
        return False

    for name, bound in (minimum or {}).items():
        if not measured(name):
            continue
        value = metric_value(metrics, name)
        ok = value is not None and value >= bound
        checks.append(f"{name} = {value} >= {bound}: {'ok' if ok else 'FAIL'}")
        if not ok:
            reasons.append(f"{name} {value} below the minimum {bound}")
    for name, bound in (maximum or {}).items():
        if not measured(name):
            continue
        value = metric_value(metrics, name)
        ok = value is not None and value <= bound
        checks.append(f"{name} = {value} <= {bound}: {'ok' if ok else 'FAIL'}")
        if not ok:
            reasons.append(f"{name} {value} above the maximum {bound}")
    for names, sign in ((higher_is_better, 1.0), (lower_is_better, -1.0)):
        for name in names if champion else ():
            best = champion.get(name)
            if best is None or not measured(name):
                continue
            value = metric_value(metrics, name)
            ok = value is not None and sign * (value - best) >= -tolerance
            checks.append(f"{name} = {value} vs champion {best} (tolerance {tolerance}): {'ok' if ok else 'FAIL'}")
            if not ok:
                reasons.append(f"{name} {value} regresses from the champion's {best} by more than {tolerance}")
    return GateDecision(not reasons, reasons, checks, sorted(absent))


def champion_metrics(client, name: str) -> dict[str, float] | None:
    """The metrics recorded on the current champion version's tags, or None when there is no champion."""
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except Exception:  # noqa: BLE001 - MLflow raises a generic MlflowException when alias or model is missing
        return None
    return {k[len(METRIC_TAG):]: float(v) for k, v in version.tags.items() if k.startswith(METRIC_TAG)}


def flat_metrics(metrics: Mapping, prefix: str = "") -> dict[str, float]:
    """Nested metrics -> {dotted name: value} for the numbers (the registry's version tags)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_metrics(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out


def register(client, model_uri: str, name: str, metrics: Mapping, decision: GateDecision, alias: str | None,
             tags: Mapping[str, str] | None = None):
    """Register a model version with its metrics and gate decision as tags, and point `alias` at it."""
    import mlflow

    version = mlflow.register_model(model_uri, name)
    flat = {f"{METRIC_TAG}{k}": v for k, v in flat_metrics(metrics).items()}
    for key, value in {**flat, "gates.passed": str(decision.passed),
                       "gates.reasons": json.dumps(decision.reasons)[:4900],
                       "gates.not_measured": json.dumps(decision.not_measured), **(tags or {})}.items():
        client.set_model_version_tag(name, version.version, key, str(value))
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return version


def promote(client, name: str, version: str | int, alias: str = CHAMPION) -> None:
    """Point an alias (default `champion`) at a registered version, as a person would in the MLflow UI."""
    client.get_model_version(name, str(version))  # fails clearly when the version does not exist
    client.set_registered_model_alias(name, alias, str(version))
