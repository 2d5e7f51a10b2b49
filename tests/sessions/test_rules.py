"""Session rules as pure functions: transitions, alarm conditions (incl. sustained and change
from baseline), the observation schedule, totals from the administration record, the doses the
pharmacology engine sees, scores, the discharge checklist and billing units."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from ketacare.knowledge.sessions import session_rules
from ketacare.sessions import rules

T0 = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)
K = session_rules()


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("current", "target", "ok"),
    [
        ("scheduled", "checked_in", True),
        ("checked_in", "running", False),
        ("prechecks_done", "running", True),
        ("running", "recovery", True),
        ("recovery", "discharged", False),
        ("ready_for_discharge", "discharged", True),
        ("ready_for_discharge", "recovery", True),
        ("discharged", "aborted", False),
        ("aborted", "running", False),
        ("running", "aborted", True),
    ],
)
def test_transitions(current: str, target: str, ok: bool) -> None:
    if ok:
        rules.check_transition(current, target)
    else:
        with pytest.raises(rules.TransitionRefused, match="cannot become"):
            rules.check_transition(current, target)


def test_threshold_and_baseline_alarms() -> None:
    new = [rules.Reading("sbp", 181, at(10)), rules.Reading("hr", 60, at(10))]
    keys = {t.rule.key for t in rules.alarm_triggers(K.alarms, new, [], {"sbp": 120})}
    assert keys == {"sbp_high", "sbp_rise"}
    # a 26% rise over a low baseline alarms without crossing 180
    keys = {
        t.rule.key
        for t in rules.alarm_triggers(K.alarms, [rules.Reading("sbp", 139, at(5))], [], {"sbp": 110})
    }
    assert keys == {"sbp_rise"}
    assert not rules.alarm_triggers(K.alarms, [rules.Reading("sbp", 137, at(5))], [], {"sbp": 110})
    # no baseline yet: change-from-baseline cannot fire
    assert not rules.alarm_triggers(K.alarms, [rules.Reading("sbp", 170, at(5))], [], {})


def test_sustained_low_spo2_needs_more_than_sixty_seconds() -> None:
    spo2 = K.alarm("spo2_low")
    assert spo2.sustain_s == 60 and spo2.value == 92
    history = [rules.Reading("spo2", 91, T0), rules.Reading("spo2", 90, T0 + dt.timedelta(seconds=30))]
    short = rules.alarm_triggers(
        K.alarms, [rules.Reading("spo2", 90, T0 + dt.timedelta(seconds=50))], history, {}
    )
    assert not short
    long = rules.alarm_triggers(
        K.alarms, [rules.Reading("spo2", 89, T0 + dt.timedelta(seconds=61))], history, {}
    )
    assert [t.rule.key for t in long] == ["spo2_low"]
    # a normal reading in between restarts the clock
    broken = [*history, rules.Reading("spo2", 95, T0 + dt.timedelta(seconds=40))]
    assert not rules.alarm_triggers(
        K.alarms, [rules.Reading("spo2", 89, T0 + dt.timedelta(seconds=61))], broken, {}
    )


def test_observation_schedule_every_15_then_30_minutes() -> None:
    schedule = K.observation_vitals
    assert rules.next_due(schedule, T0, None) == T0
    assert rules.next_due(schedule, T0, at(10)) == at(25)
    assert rules.next_due(schedule, T0, at(70)) == at(100)
    assert rules.next_due(schedule, T0, at(200)) == at(260)


GIVEN = [
    rules.Given("start", "ketamine", "iv_infusion", at(0), rate_mg_per_h=28),
    rules.Given("rate_change", "ketamine", "iv_infusion", at(30), rate_mg_per_h=14),
    rules.Given("premedication", "midazolam", "iv", at(-5), dose_mg=2),
    rules.Given("stop", "ketamine", "iv_infusion", at(60)),
]


def test_totals_from_the_administration_record() -> None:
    t = rules.totals(GIVEN, 70.0, at(90))
    assert t.total_mg == pytest.approx(21.0)  # 28 mg/h x 0.5 h + 14 mg/h x 0.5 h; midazolam not counted
    assert t.mg_per_kg == pytest.approx(0.3)
    assert t.infusion_min == 60 and not t.infusion_running
    assert t.last_dose_at == at(60) and t.first_dose_at == at(0)
    running = rules.totals(GIVEN[:2], 70.0, at(45))
    assert running.infusion_running and running.current_rate_mg_per_h == 14 and running.last_dose_at is None
    assert running.total_mg == pytest.approx(14 + 14 * 0.25)


def test_pharmacology_doses_follow_what_was_given() -> None:
    doses = rules.pk_doses(GIVEN, at(0), at(90), "iv_infusion")
    assert [(d.route, round(d.dose_mg, 3), d.start_min, d.duration_min) for d in doses] == [
        ("iv_infusion", 14.0, 0.0, 30.0),
        ("iv_infusion", 7.0, 30.0, 30.0),
    ]


def test_score_totals_are_checked() -> None:
    cadss = K.scales["cadss6"]
    assert rules.score_total(cadss, [0, 1, 2, 3, 4, 0]) == 10
    with pytest.raises(ValueError, match="6 item"):
        rules.score_total(cadss, [1, 2])
    with pytest.raises(ValueError, match="0 to 4"):
        rules.score_total(cadss, [0, 0, 0, 0, 0, 5])
    assert rules.score_total(K.scales["rass"], [-3]) == -3


def _discharge(**changes: object) -> rules.DischargeInput:
    base = rules.DischargeInput(
        drug="ketamine",
        last_dose_at=at(0),
        monitoring_started_at=at(-60),
        baseline={"sbp": 120, "dbp": 80, "hr": 70},
        latest={"sbp": 130, "dbp": 82, "hr": 75, "spo2": 97},
        latest_moaas=5,
        alert_and_oriented=True,
        escort_present=True,
        instructions_given=True,
        open_alarms=0,
        vitals_within_pct=20.0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_discharge_checklist() -> None:
    assert all(c.ok for c in rules.discharge_checklist(_discharge(), K, at(61)))
    early = {c.key: c for c in rules.discharge_checklist(_discharge(), K, at(45))}
    assert not early["time"].ok and "15 min to go" in early["time"].detail
    esk = {
        c.key: c
        for c in rules.discharge_checklist(
            _discharge(drug="esketamine", monitoring_started_at=at(0)), K, at(61)
        )
    }
    assert not esk["time"].ok and "120" in esk["time"].label  # from the first device, 2 hours
    high = {
        c.key: c
        for c in rules.discharge_checklist(_discharge(latest={"sbp": 150, "dbp": 80, "hr": 70}), K, at(90))
    }
    assert not high["vitals"].ok
    drowsy = {c.key: c for c in rules.discharge_checklist(_discharge(latest_moaas=4), K, at(90))}
    assert not drowsy["alert"].ok
    alarms = {c.key: c for c in rules.discharge_checklist(_discharge(open_alarms=1), K, at(90))}
    assert not alarms["alarms"].ok


def test_billing_units_from_the_actual_duration() -> None:
    assert rules.billing_units("iv_infusion", 100, 50) == [("96365", 1), ("96366", 1)]
    assert rules.billing_units("iv_infusion", 60, 50) == [("96365", 1)]
    assert rules.billing_units("iv_infusion", 12, 10) == [("96374", 1)]
    assert rules.billing_units("esketamine_nasal", 0, 84) == [("G2083", 1)]


def test_prechecks_gates() -> None:
    ctx = rules.PrecheckContext(
        ecg_required=True,
        lft_required=False,
        pregnancy_test_required=False,
        bp_decision_documented=False,
        prescribers_on_duty=frozenset({7}),
        plausible=K.plausible,
    )
    good = rules.PrecheckInput(
        weight_kg=70,
        sbp=120,
        dbp=80,
        hr=70,
        spo2=98,
        rr=14,
        consent_on_file=True,
        ecg_on_file=True,
        lft_on_file=False,
        pregnancy_test="not_applicable",
        escort_name="A",
        escort_phone="1",
        escort_confirmed=True,
        oximeter_connected=True,
        prescriber_on_site_id=7,
    )
    assert rules.precheck_problems(good, ctx, K) == {}
    bad = dataclasses.replace(
        good, ecg_on_file=False, pregnancy_test="positive", prescriber_on_site_id=8, sbp=145
    )
    errors = rules.precheck_problems(bad, ctx, K)
    assert set(errors) == {"ecg_on_file", "pregnancy_test", "prescriber_on_site_id", "sbp"}
    decided = dataclasses.replace(ctx, bp_decision_documented=True)
    assert "sbp" not in rules.precheck_problems(bad, decided, K)
