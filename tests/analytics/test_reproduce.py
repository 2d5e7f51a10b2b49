"""Every figure of the registry report that can be recomputed, recomputed from the de-identified
export alone (the Parquet files and nothing else) with code of its own: plain pandas and NumPy
here, none of the app's functions. The export carries what that needs: AE terms as catalogue
codes, the series each follow-up belongs to and its due day, each series' first and last day,
quarter and baseline look-back, and the export's day shifted with each patient."""

# ruff: noqa: E501  (the definitions are written out one per line, to be read against the docs)

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.orm import Session

from ketacare.analytics import deid, disclosure, extract, registry
from tests.analytics.random_cohort import fill

AS_OF = dt.date(2026, 11, 1)
KEY = "r" * 40
# the published definitions (docs/registry.md), written out again here
PRIMARY, WINDOW, RESPONSE_WINDOW, LOSSES = 28, (14, 56), 28, 2
DROPOUT_DUE, DROPOUT_FROM, MME_LOOKBACK, MME_AFTER = 84, 56, 90, (28, 90)


def _load(out: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_parquet(p) for p in out.glob("*.parquet")}


def _day(v: Any) -> dt.date | None:
    return None if v is None or pd.isna(v) else pd.Timestamp(v).date()


def _relief(base: float, points: list[tuple[dt.date, float]], end: dt.date) -> tuple[int, bool] | None:
    def responds(v: float) -> bool:
        return base > 0 and (base - v) / base * 100 >= 30

    if not any(responds(v) for d, v in points if (d - end).days <= RESPONSE_WINDOW):
        return None
    seen, run, start = False, 0, None
    for d, v in points:
        if responds(v):
            seen, run, start = True, 0, None
        elif seen:
            run, start = run + 1, start or d
            if run >= LOSSES:
                return (start - end).days, True
    return (points[-1][0] - end).days, False


def _series_facts(x: dict[str, pd.DataFrame]) -> pd.DataFrame:
    as_of = {p: _day(d) for p, d in zip(x["patients"]["patient"], x["patients"]["as_of"], strict=True)}
    ses = x["sessions"][
        x["sessions"]["status"].isin(["discharged", "aborted"]) & x["sessions"]["started_on"].notna()
    ]
    sc, fu, ae, mme = x["scores"], x["follow_ups"], x["adverse_events"], x["mme"]
    nrs = sc[(sc["instrument"] == "nrs") & (sc["timepoint"] != "end_of_session")]
    rows = []
    for s in x["series"].itertuples(index=False):
        mine = ses[ses["series"] == s.series]
        days = sorted(_day(d) for d in mine[mine["status"] == "discharged"]["started_on"])
        if not days:
            continue
        rows.append({"series": s.series, "patient": s.patient, "condition": s.condition or "unspecified",
                     "start": days[0], "end": days[-1], "lookback": int(s.baseline_lookback_days),
                     "discharged": len(days), "exposed": len(mine), "sessions": set(mine["session"])})  # fmt: skip
    facts = pd.DataFrame(rows)
    out = []
    for f in facts.itertuples(index=False):
        later = [d for d in facts[facts["patient"] == f.patient]["start"] if d > f.end]
        nxt = min(later) if later else None
        today = as_of[f.patient]
        bases = sorted(
            (_day(d), v) for d, v, tp, p in zip(nrs["answered_on"], nrs["score"], nrs["timepoint"], nrs["patient"], strict=True)
            if p == f.patient and tp == "baseline" and _day(d) <= f.start and (f.start - _day(d)).days <= f.lookback
        )  # fmt: skip
        base = bases[-1][1] if bases else None
        own = nrs[nrs["series"] == f.series]
        pts = sorted(
            (_day(d), v, q) for d, v, q in zip(own["answered_on"], own["score"], own["follow_up"], strict=True)
            if _day(d) > f.end and (nxt is None or _day(d) < nxt)
        )  # fmt: skip
        window = sorted(
            (abs((d - f.end).days - PRIMARY), d, v, q) for d, v, q in pts if WINDOW[0] <= (d - f.end).days <= WINDOW[1]
        )  # fmt: skip
        primary = window[0][2] if window else None
        pg = sc[(sc["instrument"] == "pgic") & (sc["follow_up"] == window[0][3])]["score"] if window else []
        relief = _relief(base, [(d, v) for d, v, _ in pts], f.end) if base is not None else None
        mf = fu[(fu["series"] == f.series) & (fu["status"] != "cancelled") & fu["days_after_series"].notna()]
        due = [(int(n), _day(d) <= today, st == "completed") for n, d, st in zip(mf["days_after_series"], mf["due_on"], mf["status"], strict=True)]  # fmt: skip
        m = [(_day(d), v) for p, d, v in zip(mme["patient"], mme["measured_on"], mme["mme_per_day"], strict=True) if p == f.patient and v == v]  # fmt: skip
        before = sorted((d, v) for d, v in m if d <= f.start and (f.start - d).days <= MME_LOOKBACK)
        after = sorted((d, v) for d, v in m if MME_AFTER[0] <= (d - f.end).days <= MME_AFTER[1] and (nxt is None or d < nxt))  # fmt: skip
        evs = ae[ae["session"].isin(f.sessions)]
        out.append({
            **f._asdict(), "baseline": base, "primary": primary, "pgic": min(pg) if len(pg) else None,
            "closed": (today - f.end).days >= WINDOW[1], "relief": relief, "next": nxt,
            "dropout": (not any(ok and n >= DROPOUT_FROM for n, _, ok in due)) if any(n >= DROPOUT_DUE and d for n, d, _ in due) else None,
            "due": sum(d for _, d, _ in due), "answered": sum(d and ok for _, d, ok in due), "events": len(evs),
            "ae_patients": set(evs["patient"]), "needed": set(evs[evs["needed_intervention"].astype(bool)]["patient"]),
            "mme_before": before[-1][1] if before else None, "mme_after": after[-1][1] if after else None,
        })  # fmt: skip
    return pd.DataFrame(out)


def _km_median(times: list[int], lost: list[bool]) -> float | None:
    s = 1.0
    for t in sorted(set(times)):
        at_risk = sum(1 for u in times if u >= t)
        died = sum(1 for u, e in zip(times, lost, strict=True) if u == t and e)
        s *= 1 - died / at_risk
        if s <= 0.5:
            return float(t)
    return None


def _cr1_mean(values: list[tuple[Any, float]]) -> tuple[float, float, float]:
    from scipy import stats as sps

    per: dict[Any, list[float]] = defaultdict(list)
    for p, v in values:
        per[p].append(v)
    n = sum(len(v) for v in per.values())
    mean = sum(sum(v) for v in per.values()) / n
    g = len(per)
    var = sum((sum(v) - mean * len(v)) ** 2 for v in per.values()) * g / (g - 1) / n**2
    half = sps.t.ppf(0.975, g - 1) * math.sqrt(var)
    return mean, mean - half, mean + half


def _figures(g: pd.DataFrame) -> dict[str, Any]:
    def pct(k: int, n: int) -> float | None:
        return None if n == 0 else round(100 * k / n, 1)

    ev = g[g["baseline"].notna() & g["primary"].notna()]
    fall = (ev["baseline"] - ev["primary"]) / ev["baseline"] * 100
    r30, r50, r2 = (
        int((fall >= 30).sum()),
        int((fall >= 50).sum()),
        int((ev["baseline"] - ev["primary"] >= 2).sum()),
    )
    due = int((g["baseline"].notna() & g["primary"].notna() | g["closed"]).sum())
    firsts = g[g["relief"].notna()].sort_values("start").groupby("patient").head(1)
    users = g[(g["mme_before"] > 0) & g["mme_after"].notna()]
    drop = g[g["dropout"].notna()]
    change = (
        _cr1_mean(list(zip(ev["patient"], ev["primary"] - ev["baseline"], strict=True)))
        if len(ev) > 1
        else None
    )
    return {
        "patients": g["patient"].nunique(), "series": len(g), "sessions": int(g["discharged"].sum()),
        "sessions_exposed": int(g["exposed"].sum()), "evaluable": len(ev), "primary_due": due,
        "responder30_pct": pct(r30, len(ev)), "responder50_pct": pct(r50, len(ev)), "responder2pt_pct": pct(r2, len(ev)),
        "responder30_mnr_pct": pct(r30, due), "responder50_mnr_pct": pct(r50, due), "responder2pt_mnr_pct": pct(r2, due),
        "pgic_n": int(g["pgic"].notna().sum()), "pgic_improved_pct": pct(int(g["pgic"].isin([1.0, 2.0]).sum()), int(g["pgic"].notna().sum())),
        "nrs_change_mean": None if change is None else round(change[0], 1),
        "nrs_change_low": None if change is None else round(change[1], 1),
        "nrs_change_high": None if change is None else round(change[2], 1),
        "relief_n": len(firsts), "relief_events": sum(r[1] for r in firsts["relief"]),
        "relief_median_days": _km_median([r[0] for r in firsts["relief"]], [r[1] for r in firsts["relief"]]),
        "ae_events": int(g["events"].sum()),
        "ae_per_100_sessions": round(100 * g["events"].sum() / g["exposed"].sum(), 2),
        "patients_with_ae_pct": pct(len(set().union(*g["ae_patients"])), g["patient"].nunique()),
        "needed_intervention_pct": pct(len(set().union(*g["needed"])), g["patient"].nunique()),
        "follow_ups_due": int(g["due"].sum()), "follow_ups_answered": int(g["answered"].sum()),
        "dropout_n": len(drop), "dropout_pct": pct(int(drop["dropout"].astype(bool).sum()), len(drop)),
        "mme_n": len(users), "mme_change_mean": round(float((users["mme_after"] - users["mme_before"]).mean()), 1) if len(users) else None,
        "mme_nonusers": int(((g["mme_before"] == 0) & g["mme_after"].notna()).sum()),
    }  # fmt: skip


@pytest.mark.parametrize("seed", [11, 12])
def test_the_report_is_recomputed_from_the_export_alone(db: Session, tmp_path: Path, seed: int) -> None:
    fill(db.connection(), seed, patients=60)
    ex = extract.extract(db, None)
    # the labels as the export carries them (catalogue codes; free text as "other (not coded)"),
    # unsuppressed: the figures the export must reproduce
    report = registry.build(disclosure.coded_columns(extract.columnar(ex)), AS_OF, research=False)
    # the limited data set: the definitions need days (Safe Harbor keeps years only)
    deid.deidentify(ex, KEY, "limited", "#1 reproduction test", AS_OF).write(tmp_path)
    exported = _load(tmp_path)
    assert "data_dictionary" not in exported and (tmp_path / "data_dictionary.csv").exists()
    facts = _series_facts(exported)
    checked = 0
    for row in report.table("summary").rows:
        if row["dimension"] not in ("all", "condition"):
            continue
        group = facts if row["dimension"] == "all" else facts[facts["condition"] == row["group"]]
        for column, want in _figures(group).items():
            got = row[column]
            assert (got is None and want is None) or got == pytest.approx(want), (
                row["group"],
                column,
                got,
                want,
            )
            checked += 1
    assert checked > 50
    # adverse events by catalogue code and grade, overall
    ae = exported["adverse_events"]
    counted = ae[ae["session"].isin(set().union(*facts["sessions"]))]
    counted = counted.assign(term=[disclosure.ae_label(k) for k in counted["term_key"]])
    for row in (r for r in report.table("adverse_events").rows if r["dimension"] == "all"):
        cell = counted[(counted["term"] == row["term"]) & (counted["grade"] == row["grade"])]
        assert (row["events"], row["patients"]) == (len(cell), cell["patient"].nunique())
        assert row["per_100_sessions"] == round(100 * len(cell) / facts["exposed"].sum(), 2)
    assert np.isfinite(facts["exposed"].sum())
