"""Drift of a day's batch against the training reference: inputs, predictions, and performance once labels arrive.

- numeric inputs (age, counts, measurements): population stability index (PSI) over the reference's quantile bins,
  with a chi-square test of homogeneity (batch against reference counts) on the same bins;
- categorical inputs (sex, family history, age band): chi-square test of homogeneity and Jensen-Shannon distance;
- finding prevalence (share of patients with a finding in each organ system, and the most common findings):
  Jensen-Shannon distance between the prevalence profiles, and a per-item two-proportion test (Bonferroni);
- predictions: distribution of the top-1 disease (chi-square + Jensen-Shannon), top-1 probability (PSI),
  share of anomaly flags (binomial test);
- performance when diagnoses are known: top-1 / top-3 / top-k accuracy against the reference's (held-out test).

A statistic drifts when it is both significant (p < p_value) and large (PSI / JS above its threshold): a big
batch makes tiny shifts significant, a small one makes large PSI values by chance; neither alone raises an alert.
Below `min_samples` patients nothing is judged (`drift: null`).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

EPS = 1e-4
MISSING = "missing"
REFERENCE_VERSION = 1


@dataclass
class Thresholds:
    psi: float = 0.2
    psi_moderate: float = 0.1
    js: float = 0.1
    p_value: float = 0.01
    min_samples: int = 30
    min_prevalence_change: float = 0.1
    anomaly_rate_change: float = 0.1
    performance_drop: float = 0.1

    @classmethod
    def from_mapping(cls, m: Mapping | None) -> "Thresholds":
        m = dict(m or {})
        return cls(**{k: type(getattr(cls, k))(v) for k, v in m.items() if hasattr(cls, k)})


# -- patient columns -----------------------------------------------------------------------------------------
AGE_BANDS = (0, 1, 6, 12, 18, 40, 65)


def _age_band(age: float) -> str:
    if age != age:
        return MISSING
    for lo, hi in zip(AGE_BANDS[:-1], AGE_BANDS[1:]):
        if lo <= age < hi:
            return f"{lo}-{hi}"
    return f"{AGE_BANDS[-1]}+" if age >= AGE_BANDS[-1] else "negative"


def patient_columns(table: pd.DataFrame, measurements: Sequence[str] = ()) -> pd.DataFrame:
    """The monitored columns of a canonical patient table: numbers and categories, one row per patient."""
    age = pd.to_numeric(table["age"], errors="coerce").astype(float)
    fam = pd.to_numeric(table["family_history"], errors="coerce").astype(float)
    out = pd.DataFrame({
        "age": age.to_numpy(),
        "n_findings": table["findings"].map(len).to_numpy(dtype=float),
        "n_excluded": table["excluded"].map(len).to_numpy(dtype=float),
        "n_history": table["history"].map(len).to_numpy(dtype=float),
        "sex": [s if s in ("F", "M") else MISSING for s in table["sex"]],
        "family_history": [MISSING if v != v else ("yes" if v >= 0.5 else "no") for v in fam],
        "age_band": [_age_band(a) for a in age],
    })
    for name in measurements:
        out[name] = [float((m or {}).get(name, np.nan)) for m in table["measurements"]]
    return out


# -- numeric: PSI ----------------------------------------------------------------------------------------------
def numeric_profile(values: Iterable[float], bins: int = 10) -> dict:
    """Quantile bin edges of the reference and its share per bin (missing values are their own bin)."""
    v = np.asarray(list(values), dtype=float)
    finite = v[np.isfinite(v)]
    if len(finite) == 0:
        edges: list[float] = []
    else:
        edges = sorted(set(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]).round(6).tolist()))
    counts = binned_counts(v, edges)
    return {"edges": edges, "proportions": (counts / max(counts.sum(), 1)).tolist(), "n": int(len(v)),
            "mean": float(finite.mean()) if len(finite) else None,
            "missing_share": float(1 - len(finite) / max(len(v), 1))}


def binned_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts per bin (-inf, e1], (e1, e2], ..., (ek, inf), then missing."""
    v = np.asarray(values, dtype=float)
    finite = np.isfinite(v)
    idx = np.searchsorted(np.asarray(edges, dtype=float), v[finite], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    return np.append(counts, float((~finite).sum()))


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index: sum (a - e) ln(a / e) over bins, shares floored at EPS."""
    e = np.maximum(np.asarray(expected, dtype=float), EPS)
    a = np.maximum(np.asarray(actual, dtype=float), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def _two_sample(observed: np.ndarray, reference_share: np.ndarray, n_reference: int) -> tuple[float, float]:
    """Chi-square test of homogeneity: batch counts against the reference's counts (its own sampling error
    counts too, so a small reference does not make every batch look different). Sparse bins are merged."""
    observed = np.asarray(observed, dtype=float)
    reference = np.asarray(reference_share, dtype=float) * max(int(n_reference), 1)
    pooled = observed + reference
    small = pooled < 10
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        reference = np.append(reference[~small], reference[small].sum())
    keep = (observed + reference) > 0
    observed, reference = observed[keep], reference[keep]
    if len(observed) < 2 or observed.sum() == 0 or reference.sum() == 0:
        return 0.0, 1.0
    stat, p, _, _ = stats.chi2_contingency(np.vstack([reference, observed]), correction=False)
    return float(stat), float(p)


def compare_numeric(reference: Mapping, values: Iterable[float], th: Thresholds) -> dict:
    v = np.asarray(list(values), dtype=float)
    counts = binned_counts(v, reference["edges"])
    shares = counts / max(counts.sum(), 1)
    value = psi(reference["proportions"], shares)
    stat, p = _two_sample(counts, np.asarray(reference["proportions"], dtype=float), reference["n"])
    finite = v[np.isfinite(v)]
    out = {"test": "psi", "psi": round(value, 6), "chi2": round(stat, 3), "p_value": p, "n": int(len(v)),
           "mean": float(finite.mean()) if len(finite) else None, "reference_mean": reference.get("mean")}
    out["drift"] = _verdict(len(v), th, value > th.psi and p < th.p_value)
    out["moderate"] = bool(th.psi_moderate < value <= th.psi)
    return out


# -- categorical: chi-square + Jensen-Shannon ----------------------------------------------------------------
def categorical_profile(values: Iterable[str]) -> dict:
    s = pd.Series(list(values), dtype=object).fillna(MISSING).astype(str)
    shares = s.value_counts(normalize=True).sort_index()
    return {"proportions": {k: float(v) for k, v in shares.items()}, "n": int(len(s))}


def js_distance(p: Sequence[float], q: Sequence[float]) -> float:
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    value = float(jensenshannon(p, q, base=2))
    return 0.0 if math.isnan(value) else value


def compare_categorical(reference: Mapping, values: Iterable[str], th: Thresholds) -> dict:
    s = pd.Series(list(values), dtype=object).fillna(MISSING).astype(str)
    ref = dict(reference["proportions"])
    cats = sorted(set(ref) | set(s.unique()))
    observed = s.value_counts().reindex(cats, fill_value=0).to_numpy(dtype=float)
    expected = np.array([ref.get(c, 0.0) for c in cats])
    stat, p = _two_sample(observed, expected, reference["n"])
    js = js_distance(expected, observed / max(observed.sum(), 1))
    new = [c for c in cats if ref.get(c, 0.0) == 0 and observed[cats.index(c)] > 0]
    out = {"test": "chi2+js", "chi2": round(stat, 3), "p_value": p, "js": round(js, 6), "n": int(len(s)),
           "shares": {c: round(float(o / max(observed.sum(), 1)), 4) for c, o in zip(cats, observed)},
           "reference_shares": {c: round(float(ref.get(c, 0.0)), 4) for c in cats}, "unseen_categories": new}
    out["drift"] = _verdict(len(s), th, js > th.js and p < th.p_value)
    return out


# -- finding prevalence ------------------------------------------------------------------------------------------
def prevalence(sets: Sequence[Iterable[str]], items: Sequence[str] | None = None) -> dict[str, float]:
    """Share of patients whose set contains each item (all items seen, or the given ones)."""
    n = max(len(sets), 1)
    counts: dict[str, int] = {}
    for s in sets:
        for item in set(s):
            counts[item] = counts.get(item, 0) + 1
    keys = items if items is not None else sorted(counts)
    return {k: counts.get(k, 0) / n for k in keys}


def compare_prevalence(reference: Mapping, sets: Sequence[Iterable[str]], th: Thresholds, top: int = 10) -> dict:
    """JS distance between prevalence profiles (as distributions over items) and per-item proportion tests."""
    ref = dict(reference["prevalence"])
    n_ref = int(reference["n"])
    items = list(ref)
    cur = prevalence(sets, items)
    n = len(sets)
    js = js_distance([ref[i] for i in items], [cur[i] for i in items])
    changes = []
    for item in items:
        p0, p1 = ref[item], cur[item]
        pooled = (p0 * n_ref + p1 * n) / max(n_ref + n, 1)
        se = math.sqrt(max(pooled * (1 - pooled) * (1 / max(n_ref, 1) + 1 / max(n, 1)), 1e-12))
        z = (p1 - p0) / se
        pv = float(2 * stats.norm.sf(abs(z)))
        changes.append({"item": item, "reference": round(p0, 4), "current": round(p1, 4), "p_value": pv})
    alpha = th.p_value / max(len(items), 1)
    significant = [c for c in changes if c["p_value"] < alpha
                   and abs(c["current"] - c["reference"]) >= th.min_prevalence_change]
    changes.sort(key=lambda c: -abs(c["current"] - c["reference"]))
    out = {"test": "js+two-proportion", "js": round(js, 6), "n": n, "n_items": len(items),
           "n_significant": len(significant), "largest_changes": changes[:top]}
    out["drift"] = _verdict(n, th, js > th.js and len(significant) > 0)
    return out


def _verdict(n: int, th: Thresholds, drifted: bool) -> bool | None:
    return None if n < th.min_samples else bool(drifted)


# -- predictions -------------------------------------------------------------------------------------------
def top_k_accuracy(predictions: pd.DataFrame, labels: Sequence[str], k: int) -> float:
    cols = [f"disease_{r}" for r in range(1, k + 1) if f"disease_{r}" in predictions]
    hits = np.zeros(len(predictions), dtype=bool)
    labels = np.asarray(labels, dtype=object)
    for c in cols:
        hits |= predictions[c].to_numpy(dtype=object) == labels
    return float(hits.mean()) if len(hits) else float("nan")


def performance(predictions: pd.DataFrame) -> dict | None:
    """Top-1/3/k accuracy and macro F1 on the rows whose diagnosis is known; None without labels."""
    if "diagnosis" not in predictions:
        return None
    known = predictions[predictions["diagnosis"].notna() & (predictions["diagnosis"].astype(str) != "")]
    if known.empty:
        return None
    from sklearn.metrics import f1_score

    y = known["diagnosis"].astype(str).to_numpy()
    k = max(int(c.split("_")[1]) for c in known.columns if c.startswith("disease_"))
    return {"n_labelled": int(len(known)), "top1": top_k_accuracy(known, y, 1), "top3": top_k_accuracy(known, y, 3),
            f"top{k}": top_k_accuracy(known, y, k),
            "macro_f1": float(f1_score(y, known["disease_1"].astype(str), average="macro", zero_division=0))}


def prediction_profile(predictions: pd.DataFrame, bins: int = 10) -> dict:
    flags = predictions["anomaly_flag"] if "anomaly_flag" in predictions else pd.Series(dtype=int)
    known = flags[flags >= 0]
    return {
        "top1_disease": categorical_profile(predictions["disease_1"].astype(str)),
        "top1_probability": numeric_profile(predictions["probability_1"], bins),
        "anomaly_rate": float((known == 1).mean()) if len(known) else None,
        "performance": performance(predictions),
    }


def compare_predictions(reference: Mapping, predictions: pd.DataFrame, th: Thresholds) -> dict:
    out = {"top1_disease": compare_categorical(reference["top1_disease"], predictions["disease_1"].astype(str), th),
           "top1_probability": compare_numeric(reference["top1_probability"], predictions["probability_1"], th)}
    flags = predictions["anomaly_flag"] if "anomaly_flag" in predictions else pd.Series(dtype=int)
    known = flags[flags >= 0]
    ref_rate = reference.get("anomaly_rate")
    if len(known) and ref_rate is not None:
        k = int((known == 1).sum())
        p = float(stats.binomtest(k, len(known), min(max(ref_rate, EPS), 1 - EPS)).pvalue)
        rate = k / len(known)
        out["anomaly_rate"] = {"test": "binomial", "rate": round(rate, 4), "reference_rate": round(ref_rate, 4),
                               "p_value": p, "n": int(len(known)),
                               "drift": _verdict(len(known), th, abs(rate - ref_rate) >= th.anomaly_rate_change
                                                 and p < th.p_value)}
    return out


def compare_performance(reference: Mapping | None, predictions: pd.DataFrame, th: Thresholds) -> dict | None:
    current = performance(predictions)
    if current is None:
        return None
    out = {"current": current, "reference": reference}
    if reference:
        drop = {m: round(reference[m] - current[m], 4) for m in ("top1", "top3") if m in reference and m in current}
        out["drop"] = drop
        out["degraded"] = _verdict(current["n_labelled"], th, any(d > th.performance_drop for d in drop.values()))
    return out


# -- reference and report ------------------------------------------------------------------------------------------
class OrganSystems:
    """Finding id -> organ systems (the HPO branches under Phenotypic abnormality), alt ids included."""

    def __init__(self, knowledge):
        systems = dict(zip(knowledge.terms["id"], knowledge.terms["organ_systems"]))
        for alias, term in knowledge.alias_map.items():
            if term in systems and alias not in systems:
                systems[alias] = systems[term]
        self.systems = {k: tuple(v) for k, v in systems.items()}
        self.names = {s: knowledge.term_names.get(s, s) for v in self.systems.values() for s in v}

    def of(self, findings: Iterable[Iterable[str]]) -> list[set[str]]:
        return [{s for t in f for s in self.systems.get(t, ())} for f in findings]


def build_reference(train: pd.DataFrame, test_predictions: pd.DataFrame | None = None, organ_systems=None,
                    bins: int = 10, top_findings: int = 50, model: str = "", model_version: str = "") -> dict:
    """The training profile that batches are compared with (inputs from training patients, predictions from the
    held-out test patients, so that confidence and accuracy are those of unseen patients)."""
    measurements = sorted({k for m in train["measurements"] for k in (m or {})})
    cols = patient_columns(train, measurements)
    numeric = ["age", "n_findings", "n_excluded", "n_history", *measurements]
    ref = {
        "version": REFERENCE_VERSION, "model": model, "model_version": model_version, "n": int(len(train)),
        "numeric": {c: numeric_profile(cols[c], bins) for c in numeric},
        "categorical": {c: categorical_profile(cols[c]) for c in ("sex", "family_history", "age_band")},
        "measurements": measurements,
    }
    common = prevalence(list(train["findings"]))
    top = sorted(common, key=lambda t: -common[t])[:top_findings]
    ref["findings"] = {"prevalence": {t: common[t] for t in top}, "n": int(len(train))}
    if organ_systems is not None:
        ref["organ_systems"] = {"prevalence": prevalence(organ_systems.of(train["findings"])), "n": int(len(train))}
        ref["organ_system_names"] = {k: v for k, v in organ_systems.names.items()
                                     if k in ref["organ_systems"]["prevalence"]}
    if test_predictions is not None and len(test_predictions):
        ref["predictions"] = prediction_profile(test_predictions, bins)
    return ref


def compare(reference: Mapping, patients: pd.DataFrame, predictions: pd.DataFrame | None = None,
            organ_systems=None, thresholds: Thresholds | None = None, batch: str = "") -> dict:
    """The drift report of one batch (valid patients, and their predictions when given)."""
    th = thresholds or Thresholds()
    cols = patient_columns(patients, reference.get("measurements", ()))
    inputs = {c: compare_numeric(p, cols[c], th) for c, p in reference["numeric"].items()}
    inputs.update({c: compare_categorical(p, cols[c], th) for c, p in reference["categorical"].items()})
    inputs["findings"] = compare_prevalence(reference["findings"], list(patients["findings"]), th)
    if organ_systems is not None and "organ_systems" in reference:
        inputs["organ_systems"] = compare_prevalence(reference["organ_systems"],
                                                     organ_systems.of(patients["findings"]), th)
    report = {"batch": batch, "n_patients": int(len(patients)), "model": reference.get("model"),
              "reference_model_version": reference.get("model_version"), "thresholds": th.__dict__,
              "inputs": inputs}
    if predictions is not None and "predictions" in reference and len(predictions):
        report["predictions"] = compare_predictions(reference["predictions"], predictions, th)
        report["performance"] = compare_performance(reference["predictions"].get("performance"), predictions, th)
    drifted_inputs = sorted(k for k, v in inputs.items() if v.get("drift"))
    drifted_predictions = sorted(k for k, v in (report.get("predictions") or {}).items() if v.get("drift"))
    degraded = bool((report.get("performance") or {}).get("degraded"))
    judged = len(patients) >= th.min_samples
    report["summary"] = {
        "judged": judged, "drift": bool(drifted_inputs or drifted_predictions), "performance_degraded": degraded,
        "drifted_inputs": drifted_inputs, "drifted_predictions": drifted_predictions,
        "n_drifted": len(drifted_inputs) + len(drifted_predictions),
        "retrain_recommended": bool(drifted_inputs or drifted_predictions or degraded),
    }
    return report


# -- outputs -------------------------------------------------------------------------------------------------
def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(data) -> str:
    return json.dumps(data, indent=2, default=_plain) + "\n"


def prometheus_text(report: Mapping) -> str:
    """The report as Prometheus text exposition (for the node-exporter textfile collector or a push)."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    reg = CollectorRegistry()
    psi_g = Gauge("dxlab_monitor_psi", "Population stability index of a numeric input or prediction",
                  ["feature"], registry=reg)
    js_g = Gauge("dxlab_monitor_js_distance", "Jensen-Shannon distance (base 2) of a categorical input, "
                 "finding prevalence or the predicted disease", ["feature"], registry=reg)
    p_g = Gauge("dxlab_monitor_p_value", "p-value of the drift test", ["feature"], registry=reg)
    d_g = Gauge("dxlab_monitor_drift", "1 when the feature drifted, 0 when not, -1 when too few patients",
                ["feature"], registry=reg)
    for group in ("inputs", "predictions"):
        for name, res in (report.get(group) or {}).items():
            feature = name if group == "inputs" else f"prediction_{name}"
            if "psi" in res:
                psi_g.labels(feature).set(res["psi"])
            if "js" in res:
                js_g.labels(feature).set(res["js"])
            p_g.labels(feature).set(res.get("p_value", 1.0))
            d_g.labels(feature).set(-1 if res.get("drift") is None else int(res["drift"]))
    s = report["summary"]
    Gauge("dxlab_monitor_drift_detected", "1 when any input or prediction drifted", registry=reg).set(int(s["drift"]))
    Gauge("dxlab_monitor_drifted_features", "Number of drifted inputs and predictions",
          registry=reg).set(s["n_drifted"])
    Gauge("dxlab_monitor_batch_patients", "Valid patients in the monitored batch",
          registry=reg).set(report["n_patients"])
    perf = report.get("performance") or {}
    if perf:
        g = Gauge("dxlab_monitor_accuracy", "Accuracy of the batch once diagnoses are known", ["metric"], registry=reg)
        for m in ("top1", "top3"):
            if m in perf["current"]:
                g.labels(m).set(perf["current"][m])
        drop = Gauge("dxlab_monitor_accuracy_drop", "Reference minus batch accuracy", ["metric"], registry=reg)
        for m, v in (perf.get("drop") or {}).items():
            drop.labels(m).set(v)
    Gauge("dxlab_monitor_performance_degraded", "1 when accuracy fell by more than the threshold",
          registry=reg).set(int(s["performance_degraded"]))
    return generate_latest(reg).decode()


def html_report(report: Mapping) -> str:
    """A self-contained HTML page: verdict, then one table row per monitored statistic."""
    s = report["summary"]
    colour = "#c0392b" if s["drift"] or s["performance_degraded"] else "#27ae60"
    verdict = ("drift: " + ", ".join(s["drifted_inputs"] + [f"prediction {p}" for p in s["drifted_predictions"]])
               if s["drift"] else "no drift")
    if not s["judged"]:
        verdict = f"too few patients to judge ({report['n_patients']})"
    rows = []
    for group in ("inputs", "predictions"):
        for name, res in (report.get(group) or {}).items():
            stat = f"PSI {res['psi']:.3f}" if "psi" in res else (f"JS {res['js']:.3f}" if "js" in res else
                                                                   f"rate {res.get('rate', 0):.3f}")
            drift = res.get("drift")
            mark = "&ndash;" if drift is None else ("DRIFT" if drift else "ok")
            style = ' style="color:#c0392b;font-weight:bold"' if drift else ""
            detail = ""
            if "largest_changes" in res:
                detail = "; ".join(f"{html.escape(c['item'])} {c['reference']:.2f}&rarr;{c['current']:.2f}"
                                   for c in res["largest_changes"][:3])
            elif "shares" in res:
                detail = ", ".join(f"{html.escape(k)} {res['reference_shares'].get(k, 0):.2f}&rarr;{v:.2f}"
                                   for k, v in list(res["shares"].items())[:6])
            elif res.get("mean") is not None and res.get("reference_mean") is not None:
                detail = f"mean {res['reference_mean']:.2f}&rarr;{res['mean']:.2f}"
            rows.append(f"<tr><td>{group}</td><td>{html.escape(name)}</td><td>{stat}</td>"
                        f"<td>{res.get('p_value', 1.0):.2g}</td><td>{res.get('n', '')}</td><td{style}>{mark}</td>"
                        f"<td>{detail}</td></tr>")
    perf = report.get("performance")
    perf_html = ""
    if perf:
        cur = perf["current"]
        ref = perf.get("reference") or {}
        perf_html = ("<h2>Performance (diagnoses known)</h2><table><tr><th>metric</th><th>reference</th>"
                     "<th>batch</th></tr>" + "".join(
                         f"<tr><td>{m}</td><td>{ref.get(m, float('nan')):.3f}</td><td>{cur[m]:.3f}</td></tr>"
                         for m in ("top1", "top3") if m in cur) + f"</table><p>{cur['n_labelled']} labelled "
                     f"patients; degraded: {perf.get('degraded')}</p>")
    title = html.escape(report["batch"] or "batch")
    th = report["thresholds"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>dxlab drift report {title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:left}}</style></head><body>
<h1>Drift report: {title}</h1>
<p style="font-size:1.3em;color:{colour}"><b>{html.escape(verdict)}</b></p>
<p>{report['n_patients']} valid patients; model {html.escape(str(report.get('model')))} (reference built with version
{html.escape(str(report.get('reference_model_version')))}). A statistic drifts when significant (p &lt;
{th['p_value']}) and large (PSI &gt; {th['psi']}, JS &gt; {th['js']}).</p>
<table><tr><th>group</th><th>feature</th><th>statistic</th><th>p</th><th>n</th><th>verdict</th><th>detail</th></tr>
{''.join(rows)}</table>{perf_html}</body></html>
"""


def write_report(report: Mapping, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "html": out / "report.html", "prometheus": out / "metrics.prom"}
    paths["json"].write_text(to_json(report))
    paths["html"].write_text(html_report(report))
    paths["prometheus"].write_text(prometheus_text(report))
    return paths
