"""The public front door (no login): education, the self-assessment, the clinic directory,
estimates and consultation booking; and the clinic's own pages: profile, slots, the request
queue and review moderation. Thin: parse, call the service, render."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from starlette.responses import RedirectResponse, Response

from ketacare.auth import service as auth
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.directory import assessment as rules
from ketacare.directory import geo, mail, service, tokens
from ketacare.directory.schemas import (
    ROOM_TYPES,
    ROUTE_LABELS,
    SETTINGS,
    AssessmentIn,
    AssessmentOut,
    BookingIn,
    BookingOut,
    CancelIn,
    ModerationIn,
    ProfileIn,
    ReasonOut,
    ReviewIn,
    SearchIn,
    SlotsIn,
    assessment_from_form,
)
from ketacare.errors import InvalidInput, KetaCareError, NotFound
from ketacare.knowledge.front_door import (
    Page,
    education_pages,
    insurance_facts,
    sources,
    treatment_options,
    vetting_defaults,
)
from ketacare.knowledge.protocols import ROUTES
from ketacare.pharmacology.routetable import RouteClaimRow, route_claims_table
from ketacare.validation import parse
from ketacare.web.deps import DbSession, RowId, client_addr, public, require
from ketacare.web.forms import FormData, FormLists, form_action
from ketacare.web.templating import render

router = APIRouter()
Manager = Annotated[Principal, require(Permission.directory_manage)]
QueueReader = Annotated[Principal, require(Permission.bookings_read)]
Reviewer = Annotated[Principal, require(Permission.review_write)]
HONEYPOT = "website"  # a field people never see; bots fill it in


class SpamRejected(KetaCareError):
    status_code = 400
    title = "The form could not be accepted"
    slug = "form-rejected"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _secret(request: Request) -> str:
    secret: str = request.app.state.settings.secret_key
    return secret


def _guard(db: DbSession, request: Request, form: str, honeypot: str | None) -> str:
    """Honeypot and rate limit for a public form; returns the hashed address."""
    if honeypot:
        raise SpamRejected(
            "This form could not be accepted. If you are a person, reload the page and try again."
        )
    hashed = service.addr_hash(_secret(request), client_addr(request))
    service.throttle(db, form, hashed)
    return hashed


def _recount(db: DbSession, form: str, hashed: str) -> None:
    """A rejected submission still counts towards the limit (its transaction rolled back)."""
    db.rollback()
    service.record_hit(db, form, hashed)


@cache
def _route_table() -> tuple[RouteClaimRow, ...]:
    return route_claims_table()


def _common() -> dict[str, Any]:
    return {"SOURCES": sources(), "ROUTE_LABELS": ROUTE_LABELS, "ZIP_ATTRIBUTION": geo.ATTRIBUTION}


# --- start and education -----------------------------------------------------------------


@router.get("/start", include_in_schema=False, dependencies=[public()])
def start(request: Request) -> Response:
    return render(request, "front_start.html", {"pages": education_pages(), **_common()})


@router.get("/learn", include_in_schema=False, dependencies=[public()])
def learn_index(request: Request) -> Response:
    return render(request, "learn_index.html", {"pages": education_pages(), **_common()})


def _page(slug: str) -> Page:
    found = next((p for p in education_pages() if p.slug == slug), None)
    if found is None:
        raise NotFound("There is no education page at this address.")
    return found


@router.get("/learn/{slug}", include_in_schema=False, dependencies=[public()])
def learn_page(request: Request, slug: str) -> Response:
    page = _page(slug)
    return render(
        request,
        "learn_page.html",
        {
            "page": page,
            "cited": page.source_keys(),
            "route_rows": _route_table() if page.route_table else (),
            "pages": education_pages(),
            **_common(),
        },
    )


@router.get("/api/v1/learn", dependencies=[public()])
def learn_api() -> dict[str, Any]:
    """Every education page, each sentence with its source and tag."""
    src = sources()
    return {
        "pages": [
            {
                "slug": p.slug,
                "title": p.title,
                "sections": [
                    {
                        "heading": s.heading,
                        "sentences": [
                            {"text": x.text, "source": src[x.source].label, "tag": src[x.source].tag}
                            for x in s.sentences
                        ],
                    }
                    for s in p.sections
                ],
            }
            for p in education_pages()
        ]
    }


# --- self-assessment ---------------------------------------------------------------------


def _assess_context() -> dict[str, Any]:
    return {
        "conditions": rules.condition_choices(),
        "treatments": treatment_options(),
        "questions": rules.screening_rules(),
        "this_month": dt.date.today().strftime("%Y-%m"),
        **_common(),
    }


def _run_assessment(request: Request, data: AssessmentIn) -> tuple[rules.Result, str]:
    result = rules.assess(
        rules.Answers(
            condition=data.condition,
            pain_started=data.pain_started,
            pain_now=data.pain_now,
            pain_average=data.pain_average,
            treatments_tried=tuple(data.treatments_tried),
            screening=data.screening,
            opioid_details=data.opioid_details,
        ),
        dt.date.today(),
    )
    kept = {"answers": data.model_dump(mode="json"), "outcome": result.outcome}
    token = tokens.sign(
        _secret(request), "assessment", kept, (_now() + service.ASSESSMENT_TOKEN_TTL).timestamp()
    )
    return result, token


@router.get("/assess", include_in_schema=False, dependencies=[public()])
def assess_form(request: Request) -> Response:
    return render(request, "assess.html", {**_assess_context(), "lists": {}})


@router.post("/assess", include_in_schema=False, dependencies=[public()])
def assess_submit(request: Request, db: DbSession, form: FormLists) -> Response:
    hashed = _guard(db, request, "assess", (form.get(HONEYPOT) or [""])[0])
    flat = {k: v[0] for k, v in form.items() if v}
    try:
        data = parse(AssessmentIn, assessment_from_form(form))
    except InvalidInput as exc:
        _recount(db, "assess", hashed)
        errors = {("screening" if k.startswith("screening") else k): v for k, v in exc.errors.items()}
        return render(
            request,
            "assess.html",
            {**_assess_context(), "values": flat, "lists": form, "errors": errors},
            422,
        )
    result, token = _run_assessment(request, data)
    return render(
        request,
        "assess_result.html",
        {"result": result, "token": token, "routes": ROUTES, **_common()},
    )


def _assessment_out(result: rules.Result, token: str) -> AssessmentOut:
    src = sources()

    def cite(keys: tuple[str, ...]) -> list[dict[str, str]]:
        return [{"source": src[k].label, "url": src[k].url, "tag": src[k].tag} for k in keys]

    return AssessmentOut(
        outcome=result.outcome,
        headline=result.headline,
        reasons=[
            ReasonOut(rule=r.rule, level=r.level, text=r.text, sources=cite(r.sources))
            for r in result.reasons
        ],
        condition={
            "name": result.evidence.name,
            "grade": result.evidence.grade,
            "evidence": result.evidence.text,
            "plain": result.evidence.plain,
            "source": result.evidence.source,
            "tag": result.evidence.tag,
        },
        statements=[{"text": s.text, "sources": cite(s.sources)} for s in result.statements],
        not_first_line=result.not_first_line,
        months_with_pain=result.months_with_pain,
        assessment_token=token,
    )


@router.post("/api/v1/assessment", dependencies=[public()])
def assess_api(request: Request, db: DbSession, body: dict[str, Any]) -> AssessmentOut:
    """The result is computed and returned; nothing is stored. ``assessment_token`` carries the
    answers (signed, expiring) to a booking, where they are kept only with consent."""
    hashed = _guard(db, request, "assess", str(body.get(HONEYPOT) or ""))
    try:
        data = parse(AssessmentIn, body)
    except InvalidInput as exc:
        exc.after_rollback.append(lambda s: service.record_hit(s, "assess", hashed))
        raise
    return _assessment_out(*_run_assessment(request, data))


# --- directory ---------------------------------------------------------------------------


def _search_context() -> dict[str, Any]:
    return {"routes": ROUTES, **_common()}


@router.get("/clinics", include_in_schema=False, dependencies=[public()])
def clinics(request: Request, db: DbSession) -> Response:
    return render(
        request, "clinics.html", {"cards": service.all_clinics(db), "searched": False, **_search_context()}
    )


@router.post("/clinics/search", include_in_schema=False, dependencies=[public()])
def clinics_search(request: Request, db: DbSession, form: FormData) -> Response:
    hashed = _guard(db, request, "search", form.get(HONEYPOT))
    token = form.get("assessment", "")
    try:
        filled = {k: v for k, v in form.items() if v.strip() and k not in (HONEYPOT, "assessment")}
        origin, cards = service.search(db, parse(SearchIn, filled))
    except InvalidInput as exc:
        _recount(db, "search", hashed)
        return render(
            request,
            "clinics.html",
            {
                "cards": [],
                "searched": False,
                "values": form,
                "errors": exc.errors,
                "token": token,
                **_search_context(),
            },
            422,
        )
    return render(
        request,
        "clinics.html",
        {
            "cards": cards,
            "searched": True,
            "origin": origin,
            "values": form,
            "token": token,
            **_search_context(),
        },
    )


def _card_json(card: service.ClinicCard) -> dict[str, Any]:
    p = card.profile
    return {
        "slug": card.slug,
        "name": card.name,
        "address": {
            "street": p.street,
            "city": p.city,
            "state": p.state,
            "zip": p.zip,
            "lat": p.lat,
            "lon": p.lon,
        },
        "distance_miles": None if card.distance_miles is None else round(card.distance_miles, 1),
        "routes": p.routes,
        "setting": p.setting,
        "room_type": p.room_type,
        "staff": {
            "physicians": p.physicians,
            "crnas": p.crnas,
            "nurse_practitioners": p.nurse_practitioners,
            "acls_certified": p.acls_certified,
            "board_certified": p.board_certified,
            "years_experience": p.years_experience,
        },
        "equipment": p.equipment,
        "insurance_policy": p.insurance_policy,
        "offers_superbill": p.offers_superbill,
        "session_fee_usd": None
        if card.fee_range is None
        else {"min": card.fee_range[0], "max": card.fee_range[1]},
        "price_list": card.fee_range is not None,
        "vetting_score": card.score.value,
        "vetting_breakdown": [
            {
                "criterion": c.name,
                "earned": c.earned,
                "possible": c.possible,
                "items": [
                    {
                        "label": i.label,
                        "earned": i.earned,
                        "possible": i.possible,
                        "detail": i.detail,
                        "sources": list(i.sources),
                    }
                    for i in c.items
                ],
            }
            for c in card.score.criteria
        ],
        "reviews": [
            {"rating": r.rating, "text": r.body, "status": r.status, "hidden_reason": r.reason}
            for r in card.reviews
        ],
    }


@router.post("/api/v1/clinics/search", dependencies=[public()])
def clinics_search_api(request: Request, db: DbSession, body: SearchIn) -> dict[str, Any]:
    """Search by distance from a US ZIP code (in the body, never in the URL)."""
    _guard(db, request, "search", None)
    origin, cards = service.search(db, body)
    return {
        "origin": {"zip": origin.zip, "city": origin.city, "state": origin.state},
        "clinics": [_card_json(c) for c in cards],
        "attribution": geo.ATTRIBUTION,
    }


def _clinic_context(db: DbSession, card: service.ClinicCard) -> dict[str, Any]:
    return {
        "card": card,
        "slots": service.open_slots(db, card.clinic_id, _now()),
        "protocols": service.offered_protocols(db, card),
        "equipment_labels": dict(vetting_defaults().equipment),
        **_common(),
    }


@router.get("/clinics/{slug}", include_in_schema=False, dependencies=[public()])
def clinic_page(request: Request, db: DbSession, slug: str) -> Response:
    card = service.clinic_card(db, slug)
    return render(request, "clinic.html", _clinic_context(db, card))


@router.get("/api/v1/clinics/{slug}", dependencies=[public()])
def clinic_api(db: DbSession, slug: str) -> dict[str, Any]:
    card = service.clinic_card(db, slug)
    return {
        **_card_json(card),
        "open_slots": [
            {"id": s.id, "starts_at": s.starts_at.isoformat(), "minutes": s.minutes}
            for s in service.open_slots(db, card.clinic_id, _now())
        ],
        "protocols": [
            {"key": p.key, "name": p.name, "route": p.route} for p in service.offered_protocols(db, card)
        ],
    }


Weight = Annotated[float | None, Query(ge=20, le=300)]


@router.get("/clinics/{slug}/estimate", include_in_schema=False, dependencies=[public()])
def estimate_page(
    request: Request, db: DbSession, slug: str, protocol: str = "", weight_kg: Weight = None
) -> Response:
    card = service.clinic_card(db, slug)
    context = {**_clinic_context(db, card), "insurance": insurance_facts(), "values": {"protocol": protocol}}
    try:
        estimate = service.estimate(db, card, protocol, weight_kg)
    except InvalidInput as exc:
        return render(request, "estimate.html", {**context, "errors": exc.errors}, 422 if protocol else 200)
    return render(request, "estimate.html", {**context, "estimate": estimate})


@router.get("/api/v1/clinics/{slug}/estimate", dependencies=[public()])
def estimate_api(db: DbSession, slug: str, protocol: str, weight_kg: Weight = None) -> dict[str, Any]:
    card = service.clinic_card(db, slug)
    est = service.estimate(db, card, protocol, weight_kg)
    src = sources()
    return {
        "clinic": card.name,
        "protocol": {
            "key": est.protocol.key,
            "name": est.protocol.name,
            "source": est.protocol.source,
            "tag": est.protocol.tag,
        },
        "weight_kg": {"low": est.weight_kg[0], "high": est.weight_kg[1]},
        "ranges": [
            {
                "label": s.label,
                "sessions": s.sessions,
                "low_usd": s.low_usd,
                "high_usd": s.high_usd,
                "codes": [{"code": c.code, "units": c.units, "label": c.label} for c in s.high.codes],
            }
            for s in est.spans
        ],
        "insurance": [
            {"text": f.text, "sources": [{"source": src[k].label, "tag": src[k].tag} for k in f.sources]}
            for f in insurance_facts()
        ],
    }


# --- booking -----------------------------------------------------------------------------


def _answers_from(request: Request, token: str) -> tuple[dict[str, Any] | None, str | None]:
    if not token:
        return None, None
    try:
        kept = tokens.verify(_secret(request), "assessment", token, _now().timestamp())
    except tokens.BadToken as exc:
        message = (
            "Your questionnaire answers expired (they are kept for 2 hours only). Untick the box, or "
            "take the self-assessment again."
            if exc.expired
            else "The questionnaire answers could not be read. Take the self-assessment again."
        )
        raise InvalidInput(errors={"share_answers": message}) from exc
    answers = kept.get("answers")
    outcome = kept.get("outcome")
    return (answers if isinstance(answers, dict) else None), (outcome if isinstance(outcome, str) else None)


def _do_book(
    request: Request, db: DbSession, slug: str, data: BookingIn, background: BackgroundTasks
) -> tuple[service.ClinicCard, Any, str]:
    card = service.clinic_card(db, slug)
    answers, outcome = _answers_from(request, data.assessment) if data.share_answers else (None, None)
    row = service.book(db, card.clinic_id, data, answers, outcome, _now())
    cancel_url = str(request.url_for("cancel_page", token=service.cancel_token(_secret(request), row)))
    settings = request.app.state.settings
    time_zone = auth.clinic(db, card.clinic_id).time_zone
    zone_when = row.starts_at.astimezone(zoneinfo.ZoneInfo(time_zone)).strftime("%Y-%m-%d %H:%M")
    zone_when = f"{zone_when} ({time_zone})"
    background.add_task(
        mail.confirmation, settings, row.email, row.reference, card.name, zone_when, cancel_url
    )
    return card, row, cancel_url


@router.post("/clinics/{slug}/book", include_in_schema=False, dependencies=[public()])
def book_page(
    request: Request, db: DbSession, slug: str, form: FormData, background: BackgroundTasks
) -> Response:
    if form.get("step") == "start":
        card = service.clinic_card(db, slug)
        values = {
            "assessment": form.get("assessment", ""),
            "share_answers": "on" if form.get("assessment") else "",
        }
        return render(request, "clinic.html", {**_clinic_context(db, card), "values": values})
    hashed = _guard(db, request, "book", form.get(HONEYPOT))
    try:
        filled = {k: v for k, v in form.items() if v.strip() and k != HONEYPOT}
        data = parse(BookingIn, {**filled, "share_answers": form.get("share_answers") == "on"})
        card, row, cancel_url = _do_book(request, db, slug, data, background)
    except InvalidInput as exc:
        _recount(db, "book", hashed)
        card = service.clinic_card(db, slug)
        errors = {("slot_id" if k.startswith("slot") else k): v for k, v in exc.errors.items()}
        if "form" in errors or "" in errors:
            errors["share_answers"] = errors.pop("form", errors.pop("", ""))
        return render(
            request, "clinic.html", {**_clinic_context(db, card), "values": form, "errors": errors}, 422
        )
    return render(request, "booked.html", {"card": card, "row": row, "cancel_url": cancel_url, **_common()})


@router.post("/api/v1/clinics/{slug}/bookings", status_code=201, dependencies=[public()])
def book_api(
    request: Request, db: DbSession, slug: str, body: dict[str, Any], background: BackgroundTasks
) -> BookingOut:
    hashed = _guard(db, request, "book", str(body.get(HONEYPOT) or ""))
    try:
        data = parse(BookingIn, body)
        card, row, cancel_url = _do_book(request, db, slug, data, background)
    except InvalidInput as exc:
        exc.after_rollback.append(lambda s: service.record_hit(s, "book", hashed))
        raise
    return BookingOut(
        reference=row.reference,
        clinic=card.name,
        starts_at=row.starts_at,
        cancel_url=cancel_url,
        answers_shared=row.answers is not None,
    )


@router.get("/bookings/cancel/{token}", include_in_schema=False, dependencies=[public()])
def cancel_page(request: Request, db: DbSession, token: str) -> Response:
    try:
        row = service.request_for_token(db, _secret(request), token, _now())
    except InvalidInput as exc:
        return render(request, "cancel.html", {"errors": exc.errors, "token": token, **_common()}, 422)
    return render(request, "cancel.html", {"row": row, "token": token, **_common()})


@router.post("/bookings/cancel/{token}", include_in_schema=False, dependencies=[public()])
def cancel_submit(request: Request, db: DbSession, token: str) -> Response:
    hashed = _guard(db, request, "cancel", None)
    try:
        row = service.cancel(db, _secret(request), token, _now())
    except InvalidInput as exc:
        _recount(db, "cancel", hashed)
        return render(request, "cancel.html", {"errors": exc.errors, "token": token, **_common()}, 422)
    return render(request, "cancel.html", {"row": row, "token": token, "done": True, **_common()})


@router.post("/api/v1/bookings/cancel", dependencies=[public()])
def cancel_api(request: Request, db: DbSession, body: CancelIn) -> dict[str, str]:
    _guard(db, request, "cancel", None)
    row = service.cancel(db, _secret(request), body.token, _now())
    return {"reference": row.reference, "status": row.status}


# --- the clinic's pages ------------------------------------------------------------------


def _profile_context() -> dict[str, Any]:
    return {
        "routes": ROUTES,
        "settings_": SETTINGS,
        "room_types": ROOM_TYPES,
        "equipment": vetting_defaults().equipment,
        **_common(),
    }


def _profile_values(row: Any) -> dict[str, Any]:
    if row is None:
        return {"boosters_per_year_min": "4", "boosters_per_year_max": "12"}
    data = ProfileIn.model_validate(row, from_attributes=True).model_dump()
    return {
        k: (v if isinstance(v, list) else ("on" if v is True else "" if v is False else str(v)))
        for k, v in data.items()
    }


@router.get("/directory/profile", include_in_schema=False)
def profile_page(request: Request, db: DbSession, actor: Manager) -> Response:
    row = service.profile_row(db, actor.clinic_id)
    saved = request.query_params.get("saved")
    return render(
        request, "profile_form.html", {**_profile_context(), "values": _profile_values(row), "saved": saved}
    )


def _profile_from_form(form: dict[str, list[str]]) -> dict[str, Any]:
    flat: dict[str, Any] = {k: v[0] for k, v in form.items() if v}
    for name in ("published", "acls_certified", "board_certified", "offers_superbill"):
        flat[name] = flat.get(name) == "on"
    flat["routes"] = form.get("routes", [])
    flat["equipment"] = form.get("equipment", [])
    return flat


@router.post("/directory/profile", include_in_schema=False)
def profile_save(request: Request, db: DbSession, actor: Manager, form: FormLists) -> Response:
    values = _profile_from_form(form)
    shown = {k: ("on" if v is True else "" if v is False else v) for k, v in values.items()}
    return form_action(
        db,
        lambda: service.save_profile(
            db, actor, parse(ProfileIn, {k: v for k, v in values.items() if v != ""})
        ),
        done="/directory/profile?saved=1",
        again=lambda errors: render(
            request, "profile_form.html", {**_profile_context(), "values": shown, "errors": errors}
        ),
    )


@router.get("/directory/slots", include_in_schema=False)
def slots_page(request: Request, db: DbSession, actor: Manager) -> Response:
    return render(request, "slots.html", {"slots": service.clinic_slots(db, actor, _now())})


@router.post("/directory/slots", include_in_schema=False)
def slots_add(request: Request, db: DbSession, actor: Manager, form: FormData) -> Response:
    return form_action(
        db,
        lambda: service.add_slots(
            db, actor, parse(SlotsIn, {k: v for k, v in form.items() if v.strip()}), _now()
        ),
        done="/directory/slots",
        again=lambda errors: render(
            request,
            "slots.html",
            {"slots": service.clinic_slots(db, actor, _now()), "values": form, "errors": errors},
            422,
        ),
    )


@router.post("/directory/slots/{slot_id}/withdraw", include_in_schema=False)
def slot_withdraw(db: DbSession, actor: Manager, slot_id: RowId) -> Response:
    service.withdraw_slot(db, actor, slot_id)
    return RedirectResponse("/directory/slots", status_code=303)


def _answer_rows(answers: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The kept answers as (question, answer) rows for the queue."""
    if not answers:
        return []
    names = dict(rules.condition_choices())
    treatments = dict(treatment_options())
    rows = [
        ("Condition", names.get(str(answers.get("condition")), str(answers.get("condition")))),
        ("Pain started", str(answers.get("pain_started", ""))[:7]),
        ("Pain now (0-10)", str(answers.get("pain_now"))),
        ("Pain on average (0-10)", str(answers.get("pain_average"))),
        (
            "Treatments tried",
            ", ".join(treatments.get(t, t) for t in answers.get("treatments_tried", [])) or "none",
        ),
    ]
    screening = answers.get("screening") or {}
    rows += [
        (r.question, {"unsure": "not sure"}.get(screening.get(r.key, ""), screening.get(r.key, "")))
        for r in rules.screening_rules()
    ]
    if answers.get("opioid_details"):
        rows.append(("Opioids and doses", str(answers["opioid_details"])))
    return rows


@router.get("/directory/queue", include_in_schema=False)
def queue_page(request: Request, db: DbSession, actor: QueueReader) -> Response:
    show_all = request.query_params.get("all") == "1"
    return render(
        request,
        "queue.html",
        {
            "rows": service.queue(db, actor, include_done=show_all),
            "show_all": show_all,
            "headlines": rules.HEADLINES,
            **_common(),
        },
    )


@router.get("/directory/queue/{request_id}", include_in_schema=False)
def queue_item_page(request: Request, db: DbSession, actor: QueueReader, request_id: RowId) -> Response:
    row = service.queue_item(db, actor, request_id)
    return render(
        request,
        "queue_item.html",
        {"row": row, "answer_rows": _answer_rows(row.answers), "headlines": rules.HEADLINES, **_common()},
    )


@router.post("/directory/queue/{request_id}/seen", include_in_schema=False)
def queue_seen(db: DbSession, actor: QueueReader, request_id: RowId) -> Response:
    service.mark_seen(db, actor, request_id)
    return RedirectResponse(f"/directory/queue/{request_id}", status_code=303)


@router.get("/api/v1/directory/queue")
def queue_api(db: DbSession, actor: QueueReader) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "reference": r.reference,
            "starts_at": r.starts_at.isoformat(),
            "name": r.name,
            "email": r.email,
            "phone": r.phone,
            "status": r.status,
            "outcome": r.outcome,
            "answers": r.answers,
        }
        for r in service.queue(db, actor)
    ]


@router.get("/directory/reviews", include_in_schema=False)
def reviews_page(request: Request, db: DbSession, actor: Manager) -> Response:
    return render(request, "reviews.html", {"reviews": service.reviews_for_moderation(db, actor)})


@router.post("/directory/reviews/{review_id}", include_in_schema=False)
def review_moderate(
    request: Request, db: DbSession, actor: Manager, review_id: RowId, form: FormData
) -> Response:
    return form_action(
        db,
        lambda: service.moderate(
            db, actor, review_id, parse(ModerationIn, {k: v for k, v in form.items() if v.strip()})
        ),
        done="/directory/reviews",
        again=lambda errors: render(
            request,
            "reviews.html",
            {"reviews": service.reviews_for_moderation(db, actor), "errors": errors, "error_id": review_id},
        ),
    )


@router.get("/my/review", include_in_schema=False)
def my_review_page(request: Request, db: DbSession, actor: Reviewer) -> Response:
    row = service.my_review(db, actor)
    values = {"rating": str(row.rating), "body": row.body} if row else {}
    return render(request, "my_review.html", {"row": row, "values": values})


@router.post("/my/review", include_in_schema=False)
def my_review_submit(request: Request, db: DbSession, actor: Reviewer, form: FormData) -> Response:
    return form_action(
        db,
        lambda: service.submit_review(db, actor, parse(ReviewIn, form)),
        done="/my/review",
        again=lambda errors: render(
            request, "my_review.html", {"row": None, "values": form, "errors": errors}, 422
        ),
    )
