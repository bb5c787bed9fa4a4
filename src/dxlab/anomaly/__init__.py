"""Anomaly detection on medical tables: detectors, patient features and injected anomalies, explanations,
and the labelled benchmark (`dxlab anomaly-benchmark`). Submodules import their heavy dependencies lazily."""

from dxlab.anomaly.detectors import (
    AutoencoderDetector,
    ECODDetector,
    EnsembleDetector,
    INNEDetector,
    IsolationForestDetector,
    KNNDetector,
    LOFDetector,
    MahalanobisDetector,
    OCSVMDetector,
    make_detector,
)

__all__ = [
    "AutoencoderDetector",
    "ECODDetector",
    "EnsembleDetector",
    "INNEDetector",
    "IsolationForestDetector",
    "KNNDetector",
    "LOFDetector",
    "MahalanobisDetector",
    "OCSVMDetector",
    "make_detector",
]
