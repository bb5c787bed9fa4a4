"""Prometheus metrics of the prediction service: requests, latency, predictions per disease, anomaly flags, and
input-drift gauges over a sliding window of recent patients (against the monitor's training reference)."""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from pathlib import Path

import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """One registry per app (tests build several apps in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("dxlab_requests", "HTTP requests", ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("dxlab_request_latency_seconds", "Request latency", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.patients = Counter("dxlab_patients_scored", "Patients scored", registry=r)
        self.predictions = Counter("dxlab_predictions", "Patients by predicted (top-1) disease", ["disease"],
                                   registry=r)
        self.anomalies = Counter("dxlab_anomaly_flags", "Patients flagged as anomalous", registry=r)
        self.bad_requests = Counter("dxlab_bad_requests", "Rejected requests by reason", ["reason"], registry=r)
        self.model_info = Gauge("dxlab_model_info", "The model being served (value 1)", ["model", "version"],
                                registry=r)
        self.loads = Counter("dxlab_model_loads", "Model loads: at start and when the registry alias moved",
                             registry=r)
        self.drift_psi = Gauge("dxlab_input_drift_psi", "PSI of a numeric input over recent requests vs training",
                               ["feature"], registry=r)
        self.drift_js = Gauge("dxlab_input_drift_js", "Jensen-Shannon distance of a categorical input over recent "
                              "requests vs training", ["feature"], registry=r)
        self.drift_window = Gauge("dxlab_input_drift_window_patients", "Patients in the drift window", registry=r)

    def set_model(self, name: str, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(name, version).set(1)

    def observe_predictions(self, answers: list[dict]) -> None:
        """Count the patients, the first disease of each answer and the anomaly flags (Scorer.answer's output)."""
        self.patients.inc(len(answers))
        for answer in answers:
            if answer["diagnoses"]:
                self.predictions.labels(answer["diagnoses"][0]["disease_id"]).inc()
            if answer["anomaly"]["flag"]:
                self.anomalies.inc()


class DriftWindow:
    """Recent patients' monitored columns; every `update_every` patients the drift gauges are recomputed."""

    def __init__(self, reference: dict | None, metrics: ServiceMetrics, size: int = 500, update_every: int = 50):
        self.reference = reference
        self.metrics = metrics
        self.rows: deque = deque(maxlen=max(int(size), 1))
        self.update_every = max(int(update_every), 1)
        self._since = 0
        self._pending: list[pd.DataFrame] = []
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path | None, metrics: ServiceMetrics, size: int = 500) -> "DriftWindow":
        reference = None
        if path and Path(path).exists():
            reference = json.loads(Path(path).read_text())
        else:
            log.info("no drift reference at %s: input drift gauges stay empty (run `dxlab monitor`)", path)
        return cls(reference, metrics, size)

    def add(self, patients: pd.DataFrame) -> None:
        """Keep the patients; every `update_every` patients, read their monitored columns at once (one call for
        the lot, not one per request: ~1 ms each) and recompute the gauges over the window."""
        if self.reference is None or patients.empty:
            return
        from dxlab.monitor.drift import patient_columns

        with self._lock:
            self._pending.append(patients)
            self._since += len(patients)
            if self._since < self.update_every:
                return
            pending, self._pending, self._since = self._pending, [], 0
            cols = patient_columns(pd.concat(pending, ignore_index=True), self.reference.get("measurements", ()))
            self.rows.extend(cols.to_dict("records"))
            window = pd.DataFrame(list(self.rows))
        self.update(window)

    def update(self, window: pd.DataFrame) -> None:
        from dxlab.monitor.drift import Thresholds, compare_categorical, compare_numeric

        th = Thresholds(min_samples=0)
        for name, profile in self.reference["numeric"].items():
            if name in window:
                self.metrics.drift_psi.labels(name).set(compare_numeric(profile, window[name], th)["psi"])
        for name, profile in self.reference["categorical"].items():
            if name in window:
                self.metrics.drift_js.labels(name).set(compare_categorical(profile, window[name], th)["js"])
        self.metrics.drift_window.set(len(window))
