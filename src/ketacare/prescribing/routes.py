"""Prescribing pages and JSON API: prescribers' credentials and the clinic's scope rules and
settings; a patient's encounters, PDMP checks and take-home prescriptions (write, check, sign,
cancel, print, send)."""

from __future__ import annotations

import enum
from typing import Annotated, Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from ketacare import clinic_time
from ketacare.auth.permissions import ROLE_PERMISSIONS, Permission
from ketacare.auth.principal import Principal
from ketacare.errors import InvalidInput
from ketacare.knowledge.prescribing import dea_rule, npi_rule, prescribing_rules, products
from ketacare.prescribing import common, credentials, encounters, prescriptions, rules, rx_settings, scope
from ketacare.prescribing.schemas import (
    Activity,
    BoardIn,
    CancelIn,
    CheckOut,
    CredentialsOut,
    DeaIn,
    DraftUpdateIn,
    EncounterIn,
    EncounterKind,
    EncounterOut,
    LicenceIn,
    Modality,
    NpiIn,
    PdmpFindings,
    PdmpIn,
    PdmpOut,
    PrescriptionIn,
    PrescriptionOut,
    RxSettingsIn,
    ScopeRuleIn,
    ScopeRuleOut,
    SettingOut,
    SignIn,
    StaffRole,
    TransmitOut,
)
from ketacare.validation import parse
from ketacare.web.deps import DbSession, RowId, require
from ketacare.web.forms import FormData, form_action
from ketacare.web.templating import render

router = APIRouter()
CredentialReader = Annotated[Principal, require(Permission.credential_read)]
CredentialManager = Annotated[Principal, require(Permission.credential_manage)]
SettingsManager = Annotated[Principal, require(Permission.credential_manage, sensitive=True)]
RxReader = Annotated[Principal, require(Permission.rx_read)]
RxWriter = Annotated[Principal, require(Permission.rx_write)]
RxSigner = Annotated[Principal, require(Permission.rx_write, sensitive=True)]


class CredentialKind(enum.StrEnum):
    licence = "licence"
    dea = "dea"
    board = "board"


# --- JSON shapes ---------------------------------------------------------------------------------


def credentials_out(c: credentials.StaffCredentials) -> CredentialsOut:
    return CredentialsOut(
        user_id=c.user.id,
        name=c.user.full_name,
        role=c.user.role,
        licences=[
            {
                "id": x.id,
                "state": x.state,
                "number": x.number,
                "profession": x.profession,
                "expires_on": x.expires_on,
            }
            for x in c.licences
        ],
        dea_registrations=[
            {
                "id": x.id,
                "number": x.number,
                "state": x.state,
                "expires_on": x.expires_on,
                "name_mismatch_reason": x.name_mismatch_reason,
            }
            for x in c.deas
        ],
        npi=c.npi,
        board_certifications=[
            {"id": x.id, "board": x.board, "specialty": x.specialty, "expires_on": x.expires_on}
            for x in c.boards
        ],
        problems=c.problems,
    )


def _check_out(c: rules.Check) -> CheckOut:
    return CheckOut(key=c.key, label=c.label, status=c.status, message=c.message, source=c.source, tag=c.tag)


def rx_out(v: prescriptions.RxView) -> PrescriptionOut:
    rx, ev = v.rx, v.evaluation
    return PrescriptionOut(
        id=rx.id,
        patient_id=rx.patient_id,
        prescriber_id=rx.prescriber_id,
        status=v.status,
        product_key=rx.product_key,
        product_name=rx.product_name,
        drug=rx.drug,
        route=rx.route,
        dosage_form=rx.dosage_form,
        strength_mg=rx.strength_mg,
        unit=rx.unit,
        compounded=rx.compounded,
        quantity=rx.quantity,
        days_supply=rx.days_supply,
        mg_per_day=ev.mg_per_day,
        directions=rx.directions,
        refills=rx.refills,
        issued_on=v.issued_on,
        encounter_id=rx.encounter_id,
        compounded_ack=rx.compounded_ack,
        mme_justification=rx.mme_justification,
        signed_at=rx.signed_at,
        content_sha256=rx.content_sha256,
        cancelled_on=v.cancellation.cancelled_on if v.cancellation else None,
        cancel_reason=v.cancellation.reason if v.cancellation else None,
        signable=v.status == common.DRAFT and ev.signable,
        checks=[_check_out(c) for c in ev.checks],
        missing=[f"{c.label}: {c.message}" for c in ev.blocks],
        warnings=[f"{c.label}: {c.message}" for c in ev.warnings],
        compounded_warning=prescribing_rules().compounded_warning.text if rx.compounded else None,
    )


def _encounter_out(e: Any) -> EncounterOut:
    return EncounterOut(
        id=e.id,
        patient_id=e.patient_id,
        prescriber_id=e.prescriber_id,
        kind=e.kind,
        modality=e.modality,
        occurred_on=e.occurred_on,
        patient_state=e.patient_state,
        note=e.note,
    )


def _pdmp_out(c: Any) -> PdmpOut:
    return PdmpOut(
        id=c.id,
        patient_id=c.patient_id,
        checked_on=c.checked_on,
        state=c.state,
        findings=c.findings,
        note=c.note,
    )


def _settings_out(rows: list[rx_settings.SettingRow]) -> list[SettingOut]:
    return [
        SettingOut(
            key=r.key,
            label=r.label,
            unit=r.unit,
            value=r.value,
            origin=r.origin,
            knowledge_value=r.knowledge_value,
            source=r.source,
            tag=r.tag,
        )
        for r in rows
    ]


def _scope_out(lines: list[scope.ScopeLine]) -> list[ScopeRuleOut]:
    return [
        ScopeRuleOut(
            id=x.id,
            role=x.role,
            activity=x.activity,
            state=x.state,
            allowed=x.allowed,
            origin=x.origin,
            source=x.source,
            tag=x.tag,
        )
        for x in lines
    ]


# --- credential pages ----------------------------------------------------------------------------


def _credentials_page(
    request: Request, db: DbSession, actor: Principal, user_id: int, status: int = 200, **extra: Any
) -> Response:
    return render(
        request,
        "rx_credentials_user.html",
        {
            "c": credentials.credentials_of(db, actor, user_id),
            "can_manage": Permission.credential_manage in _held(actor),
            "dea_rule": dea_rule(),
            "npi_rule": npi_rule(),
            **extra,
        },
        status,
    )


def _held(actor: Principal) -> frozenset[Permission]:
    return ROLE_PERMISSIONS[actor.role] if actor.role else frozenset()


@router.get("/credentials", include_in_schema=False)
def credentials_page(request: Request, db: DbSession, actor: CredentialReader) -> Response:
    return render(
        request,
        "rx_credentials.html",
        {
            "staff": credentials.staff_credentials(db, actor),
            "scope": scope.scope_table(db, actor.clinic_id),
            "can_manage": Permission.credential_manage in _held(actor),
            "roles": [r.value for r in StaffRole],
            "activities": [a.value for a in Activity],
            "saved": request.query_params.get("saved"),
        },
    )


@router.get("/credentials/{user_id}", include_in_schema=False)
def credentials_user_page(
    request: Request, db: DbSession, actor: CredentialReader, user_id: RowId
) -> Response:
    return _credentials_page(request, db, actor, user_id, saved=request.query_params.get("saved"))


def _credential_form(
    request: Request,
    db: DbSession,
    actor: Principal,
    user_id: int,
    section: str,
    form: dict[str, str],
    action: Any,
) -> Response:
    return form_action(
        db,
        lambda: action(),
        done=f"/credentials/{user_id}?saved={section}",
        again=lambda errors: _credentials_page(
            request, db, actor, user_id, 422, section=section, values=form, errors=errors
        ),
    )


@router.post("/credentials/{user_id}/licences", include_in_schema=False)
def licence_add(
    request: Request, db: DbSession, actor: CredentialManager, user_id: RowId, form: FormData
) -> Response:
    return _credential_form(
        request,
        db,
        actor,
        user_id,
        "licence",
        form,
        lambda: credentials.add_licence(db, actor, user_id, parse(LicenceIn, form)),
    )


@router.post("/credentials/{user_id}/dea", include_in_schema=False)
def dea_add(
    request: Request, db: DbSession, actor: CredentialManager, user_id: RowId, form: FormData
) -> Response:
    return _credential_form(
        request,
        db,
        actor,
        user_id,
        "dea",
        form,
        lambda: credentials.add_dea(db, actor, user_id, parse(DeaIn, form)),
    )


@router.post("/credentials/{user_id}/npi", include_in_schema=False)
def npi_set(
    request: Request, db: DbSession, actor: CredentialManager, user_id: RowId, form: FormData
) -> Response:
    return _credential_form(
        request,
        db,
        actor,
        user_id,
        "npi",
        form,
        lambda: credentials.set_npi(db, actor, user_id, parse(NpiIn, form)),
    )


@router.post("/credentials/{user_id}/boards", include_in_schema=False)
def board_add(
    request: Request, db: DbSession, actor: CredentialManager, user_id: RowId, form: FormData
) -> Response:
    return _credential_form(
        request,
        db,
        actor,
        user_id,
        "board",
        form,
        lambda: credentials.add_board(db, actor, user_id, parse(BoardIn, form)),
    )


@router.post("/credentials/{kind}/{credential_id}/remove", include_in_schema=False)
def credential_remove(
    db: DbSession, actor: CredentialManager, kind: CredentialKind, credential_id: RowId
) -> Response:
    user_id = credentials.remove_credential(db, actor, kind.value, credential_id)
    return RedirectResponse(f"/credentials/{user_id}?saved=removed", status_code=303)


@router.post("/credentials-scope", include_in_schema=False)
def scope_save(request: Request, db: DbSession, actor: CredentialManager, form: FormData) -> Response:
    data = {**form, "allowed": form.get("allowed") == "yes"}
    return form_action(
        db,
        lambda: scope.save_scope_rule(db, actor, parse(ScopeRuleIn, data)),
        done="/credentials?saved=scope",
        again=lambda errors: render(
            request,
            "rx_credentials.html",
            {
                "staff": credentials.staff_credentials(db, actor),
                "scope": scope.scope_table(db, actor.clinic_id),
                "can_manage": True,
                "roles": [r.value for r in StaffRole],
                "activities": [a.value for a in Activity],
                "values": form,
                "errors": errors,
                "section": "scope",
            },
            422,
        ),
    )


@router.post("/credentials-scope/{rule_id}/remove", include_in_schema=False)
def scope_remove(db: DbSession, actor: CredentialManager, rule_id: RowId) -> Response:
    scope.remove_scope_rule(db, actor, rule_id)
    return RedirectResponse("/credentials?saved=scope", status_code=303)


def _settings_page(
    request: Request, db: DbSession, actor: Principal, status: int = 200, **extra: Any
) -> Response:
    return render(
        request,
        "rx_settings.html",
        {
            "rows": rx_settings.settings_table(db, actor.clinic_id),
            "can_manage": Permission.credential_manage in _held(actor),
            "rules": prescribing_rules(),
            **extra,
        },
        status,
    )


@router.get("/prescribing/settings", include_in_schema=False)
def settings_page(request: Request, db: DbSession, actor: CredentialReader) -> Response:
    return _settings_page(request, db, actor, saved=request.query_params.get("saved"))


@router.post("/prescribing/settings", include_in_schema=False)
def settings_save(request: Request, db: DbSession, actor: SettingsManager, form: FormData) -> Response:
    data: dict[str, Any] = {k: (v if v.strip() else None) for k, v in form.items()}
    return form_action(
        db,
        lambda: rx_settings.save_settings(db, actor, parse(RxSettingsIn, data)),
        done="/prescribing/settings?saved=1",
        again=lambda errors: _settings_page(request, db, actor, 422, values=form, errors=errors),
    )


# --- credential API ------------------------------------------------------------------------------


@router.get("/api/v1/credentials", response_model=list[CredentialsOut], tags=["prescribing"])
def api_credentials(db: DbSession, actor: CredentialReader) -> list[CredentialsOut]:
    return [credentials_out(c) for c in credentials.staff_credentials(db, actor)]


@router.get("/api/v1/credentials/{user_id}", response_model=CredentialsOut, tags=["prescribing"])
def api_credentials_user(db: DbSession, actor: CredentialReader, user_id: RowId) -> CredentialsOut:
    return credentials_out(credentials.credentials_of(db, actor, user_id))


@router.post(
    "/api/v1/credentials/{user_id}/licences",
    response_model=CredentialsOut,
    status_code=201,
    tags=["prescribing"],
)
def api_licence_add(
    db: DbSession, actor: CredentialManager, user_id: RowId, body: LicenceIn
) -> CredentialsOut:
    credentials.add_licence(db, actor, user_id, body)
    return credentials_out(credentials.credentials_of(db, actor, user_id))


@router.post(
    "/api/v1/credentials/{user_id}/dea", response_model=CredentialsOut, status_code=201, tags=["prescribing"]
)
def api_dea_add(db: DbSession, actor: CredentialManager, user_id: RowId, body: DeaIn) -> CredentialsOut:
    credentials.add_dea(db, actor, user_id, body)
    return credentials_out(credentials.credentials_of(db, actor, user_id))


@router.put("/api/v1/credentials/{user_id}/npi", response_model=CredentialsOut, tags=["prescribing"])
def api_npi_set(db: DbSession, actor: CredentialManager, user_id: RowId, body: NpiIn) -> CredentialsOut:
    credentials.set_npi(db, actor, user_id, body)
    return credentials_out(credentials.credentials_of(db, actor, user_id))


@router.post(
    "/api/v1/credentials/{user_id}/boards",
    response_model=CredentialsOut,
    status_code=201,
    tags=["prescribing"],
)
def api_board_add(db: DbSession, actor: CredentialManager, user_id: RowId, body: BoardIn) -> CredentialsOut:
    credentials.add_board(db, actor, user_id, body)
    return credentials_out(credentials.credentials_of(db, actor, user_id))


@router.delete("/api/v1/credentials/{kind}/{credential_id}", status_code=204, tags=["prescribing"])
def api_credential_remove(
    db: DbSession, actor: CredentialManager, kind: CredentialKind, credential_id: RowId
) -> Response:
    credentials.remove_credential(db, actor, kind.value, credential_id)
    return Response(status_code=204)


@router.get("/api/v1/scope-rules", response_model=list[ScopeRuleOut], tags=["prescribing"])
def api_scope(db: DbSession, actor: CredentialReader) -> list[ScopeRuleOut]:
    return _scope_out(scope.scope_table(db, actor.clinic_id))


@router.post("/api/v1/scope-rules", response_model=list[ScopeRuleOut], status_code=201, tags=["prescribing"])
def api_scope_save(db: DbSession, actor: CredentialManager, body: ScopeRuleIn) -> list[ScopeRuleOut]:
    scope.save_scope_rule(db, actor, body)
    return _scope_out(scope.scope_table(db, actor.clinic_id))


@router.delete("/api/v1/scope-rules/{rule_id}", status_code=204, tags=["prescribing"])
def api_scope_remove(db: DbSession, actor: CredentialManager, rule_id: RowId) -> Response:
    scope.remove_scope_rule(db, actor, rule_id)
    return Response(status_code=204)


@router.get("/api/v1/prescribing/settings", response_model=list[SettingOut], tags=["prescribing"])
def api_settings(db: DbSession, actor: CredentialReader) -> list[SettingOut]:
    return _settings_out(rx_settings.settings_table(db, actor.clinic_id))


@router.put("/api/v1/prescribing/settings", response_model=list[SettingOut], tags=["prescribing"])
def api_settings_save(db: DbSession, actor: SettingsManager, body: RxSettingsIn) -> list[SettingOut]:
    rx_settings.save_settings(db, actor, body)
    return _settings_out(rx_settings.settings_table(db, actor.clinic_id))


@router.get("/api/v1/products", tags=["prescribing"])
def api_products(actor: RxReader) -> list[dict[str, Any]]:
    warning = prescribing_rules().compounded_warning
    return [
        {
            "key": p.key,
            "name": p.name,
            "drug": p.drug,
            "route": p.route,
            "dosage_form": p.dosage_form,
            "strength_mg": p.strength_mg,
            "unit": p.unit,
            "compounded": p.compounded,
            "home_use": p.home_use,
            "fda_warning": warning.text if p.compounded else None,
            "source": p.sourced.source,
            "tag": p.sourced.tag,
        }
        for p in products()
    ]


# --- a patient's prescriptions: pages ------------------------------------------------------------


def _patient_page(
    request: Request, db: DbSession, actor: Principal, patient_id: int, status: int = 200, **extra: Any
) -> Response:
    overview = prescriptions.patient_prescribing(db, actor, patient_id)
    return render(
        request,
        "rx_patient.html",
        {
            "patient": overview.patient,
            "o": overview,
            "products": [p for p in products() if p.home_use],
            "all_products": products(),
            "rules": prescribing_rules(),
            "is_prescriber": Permission.rx_write in _held(actor),
            "kinds": [k.value for k in EncounterKind],
            "modalities": [m.value for m in Modality],
            "findings": [f.value for f in PdmpFindings],
            "today": clinic_time.today(db, actor.clinic_id).isoformat(),
            **extra,
        },
        status,
    )


@router.get("/patients/{patient_id}/prescriptions", include_in_schema=False)
def patient_prescriptions_page(
    request: Request, db: DbSession, actor: RxReader, patient_id: RowId
) -> Response:
    return _patient_page(request, db, actor, patient_id, saved=request.query_params.get("saved"))


@router.post("/patients/{patient_id}/prescriptions/encounters", include_in_schema=False)
def encounter_add(
    request: Request, db: DbSession, actor: RxWriter, patient_id: RowId, form: FormData
) -> Response:
    return form_action(
        db,
        lambda: encounters.record_encounter(db, actor, patient_id, parse(EncounterIn, form)),
        done=f"/patients/{patient_id}/prescriptions?saved=encounter#encounters",
        again=lambda errors: _patient_page(
            request, db, actor, patient_id, 422, section="encounter", values=form, errors=errors
        ),
    )


@router.post("/patients/{patient_id}/prescriptions/pdmp-checks", include_in_schema=False)
def pdmp_add(request: Request, db: DbSession, actor: RxWriter, patient_id: RowId, form: FormData) -> Response:
    return form_action(
        db,
        lambda: encounters.record_pdmp(db, actor, patient_id, parse(PdmpIn, form)),
        done=f"/patients/{patient_id}/prescriptions?saved=pdmp#pdmp",
        again=lambda errors: _patient_page(
            request, db, actor, patient_id, 422, section="pdmp", values=form, errors=errors
        ),
    )


@router.post("/patients/{patient_id}/prescriptions/new", include_in_schema=False)
def prescription_add(
    request: Request, db: DbSession, actor: RxWriter, patient_id: RowId, form: FormData
) -> Response:
    return form_action(
        db,
        lambda: prescriptions.create_draft(db, actor, patient_id, parse(PrescriptionIn, form)),
        done=lambda rx: f"/prescriptions/{rx.id}",
        again=lambda errors: _patient_page(
            request, db, actor, patient_id, 422, section="prescription", values=form, errors=errors
        ),
    )


def _rx_page(
    request: Request, db: DbSession, actor: Principal, rx_id: int, status: int = 200, **extra: Any
) -> Response:
    v = prescriptions.view(db, actor, rx_id)
    overview = prescriptions.patient_prescribing(db, actor, v.rx.patient_id)
    return render(
        request,
        "rx_detail.html",
        {
            "v": v,
            "rx": v.rx,
            "patient": v.record.patient,
            "ev": v.evaluation,
            "encounters": overview.encounters,
            "rules": prescribing_rules(),
            "is_prescriber": Permission.rx_write in _held(actor),
            "is_author": actor.user_id == v.rx.prescriber_id,
            **extra,
        },
        status,
    )


@router.get("/prescriptions/{rx_id}", include_in_schema=False)
def prescription_page(request: Request, db: DbSession, actor: RxReader, rx_id: RowId) -> Response:
    return _rx_page(request, db, actor, rx_id, saved=request.query_params.get("saved"))


@router.post("/prescriptions/{rx_id}/update", include_in_schema=False)
def prescription_update(
    request: Request, db: DbSession, actor: RxWriter, rx_id: RowId, form: FormData
) -> Response:
    data: dict[str, Any] = {
        k: form.get(k) for k in ("encounter_id", "compounded_ack", "mme_justification") if k in form
    }
    return form_action(
        db,
        lambda: prescriptions.update_draft(db, actor, rx_id, parse(DraftUpdateIn, data)),
        done=f"/prescriptions/{rx_id}?saved=update",
        again=lambda errors: _rx_page(
            request, db, actor, rx_id, 422, section="update", values=form, errors=errors
        ),
    )


@router.post("/prescriptions/{rx_id}/sign", include_in_schema=False)
def prescription_sign(
    request: Request, db: DbSession, actor: RxSigner, rx_id: RowId, form: FormData
) -> Response:
    try:
        prescriptions.sign(
            db, actor, rx_id, SignIn(acknowledge_warnings=form.get("acknowledge_warnings") == "yes")
        )
    except InvalidInput as exc:
        db.rollback()
        return _rx_page(request, db, actor, rx_id, 422, section="sign", errors=exc.errors, problem=str(exc))
    return RedirectResponse(f"/prescriptions/{rx_id}?saved=signed", status_code=303)


@router.post("/prescriptions/{rx_id}/cancel", include_in_schema=False)
def prescription_cancel(
    request: Request, db: DbSession, actor: RxSigner, rx_id: RowId, form: FormData
) -> Response:
    return form_action(
        db,
        lambda: prescriptions.cancel(db, actor, rx_id, parse(CancelIn, form)),
        done=f"/prescriptions/{rx_id}?saved=cancelled",
        again=lambda errors: _rx_page(
            request, db, actor, rx_id, 422, section="cancel", values=form, errors=errors
        ),
    )


@router.post("/prescriptions/{rx_id}/discard", include_in_schema=False)
def prescription_discard(db: DbSession, actor: RxWriter, rx_id: RowId) -> Response:
    patient_id = prescriptions.discard_draft(db, actor, rx_id)
    return RedirectResponse(f"/patients/{patient_id}/prescriptions?saved=discarded", status_code=303)


@router.post("/prescriptions/{rx_id}/transmit", include_in_schema=False)
def prescription_transmit(db: DbSession, actor: RxWriter, rx_id: RowId) -> Response:
    prescriptions.transmit(db, actor, rx_id)
    return RedirectResponse(f"/prescriptions/{rx_id}?saved=sent", status_code=303)


@router.get("/prescriptions/{rx_id}/pdf", include_in_schema=False)
def prescription_pdf(db: DbSession, actor: RxReader, rx_id: RowId) -> Response:
    return _pdf_response(prescriptions.pdf(db, actor, rx_id), rx_id)


def _pdf_response(content: bytes, rx_id: int) -> Response:
    return Response(
        content,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="prescription-{rx_id}.pdf"'},
    )


# --- a patient's prescriptions: API --------------------------------------------------------------


@router.get("/api/v1/patients/{patient_id}/prescriptions", tags=["prescribing"])
def api_prescriptions(db: DbSession, actor: RxReader, patient_id: RowId) -> list[dict[str, Any]]:
    overview = prescriptions.patient_prescribing(db, actor, patient_id)
    return [
        {
            "id": rx.id,
            "status": status,
            "product_key": rx.product_key,
            "product_name": rx.product_name,
            "quantity": rx.quantity,
            "days_supply": rx.days_supply,
            "refills": rx.refills,
            "issued_on": rx.issued_on.isoformat(),
            "prescriber_id": rx.prescriber_id,
            "signed_at": rx.signed_at.isoformat() if rx.signed_at else None,
        }
        for rx, status in overview.prescriptions
    ]


@router.post(
    "/api/v1/patients/{patient_id}/prescriptions",
    response_model=PrescriptionOut,
    status_code=201,
    tags=["prescribing"],
)
def api_prescription_add(
    db: DbSession, actor: RxWriter, patient_id: RowId, body: PrescriptionIn
) -> PrescriptionOut:
    rx = prescriptions.create_draft(db, actor, patient_id, body)
    return rx_out(prescriptions.view(db, actor, rx.id))


@router.get("/api/v1/prescriptions/{rx_id}", response_model=PrescriptionOut, tags=["prescribing"])
def api_prescription(db: DbSession, actor: RxReader, rx_id: RowId) -> PrescriptionOut:
    return rx_out(prescriptions.view(db, actor, rx_id))


@router.patch("/api/v1/prescriptions/{rx_id}", response_model=PrescriptionOut, tags=["prescribing"])
def api_prescription_update(
    db: DbSession, actor: RxWriter, rx_id: RowId, body: DraftUpdateIn
) -> PrescriptionOut:
    prescriptions.update_draft(db, actor, rx_id, body)
    return rx_out(prescriptions.view(db, actor, rx_id))


@router.delete("/api/v1/prescriptions/{rx_id}", status_code=204, tags=["prescribing"])
def api_prescription_discard(db: DbSession, actor: RxWriter, rx_id: RowId) -> Response:
    prescriptions.discard_draft(db, actor, rx_id)
    return Response(status_code=204)


@router.post("/api/v1/prescriptions/{rx_id}/sign", response_model=PrescriptionOut, tags=["prescribing"])
def api_prescription_sign(db: DbSession, actor: RxSigner, rx_id: RowId, body: SignIn) -> PrescriptionOut:
    return rx_out(prescriptions.sign(db, actor, rx_id, body))


@router.post("/api/v1/prescriptions/{rx_id}/cancel", response_model=PrescriptionOut, tags=["prescribing"])
def api_prescription_cancel(db: DbSession, actor: RxSigner, rx_id: RowId, body: CancelIn) -> PrescriptionOut:
    prescriptions.cancel(db, actor, rx_id, body)
    return rx_out(prescriptions.view(db, actor, rx_id))


@router.get(
    "/api/v1/prescriptions/{rx_id}/pdf",
    tags=["prescribing"],
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def api_prescription_pdf(db: DbSession, actor: RxReader, rx_id: RowId) -> Response:
    return _pdf_response(prescriptions.pdf(db, actor, rx_id), rx_id)


@router.post("/api/v1/prescriptions/{rx_id}/transmit", response_model=TransmitOut, tags=["prescribing"])
def api_prescription_transmit(db: DbSession, actor: RxWriter, rx_id: RowId) -> TransmitOut:
    receipt = prescriptions.transmit(db, actor, rx_id)
    return TransmitOut(gateway=receipt.gateway, reference=receipt.reference, sent_at=receipt.sent_at)


@router.get(
    "/api/v1/patients/{patient_id}/encounters", response_model=list[EncounterOut], tags=["prescribing"]
)
def api_encounters(db: DbSession, actor: RxReader, patient_id: RowId) -> list[EncounterOut]:
    return [_encounter_out(e) for e in prescriptions.patient_prescribing(db, actor, patient_id).encounters]


@router.post(
    "/api/v1/patients/{patient_id}/encounters",
    response_model=EncounterOut,
    status_code=201,
    tags=["prescribing"],
)
def api_encounter_add(db: DbSession, actor: RxWriter, patient_id: RowId, body: EncounterIn) -> EncounterOut:
    return _encounter_out(encounters.record_encounter(db, actor, patient_id, body))


@router.get("/api/v1/patients/{patient_id}/pdmp-checks", response_model=list[PdmpOut], tags=["prescribing"])
def api_pdmp(db: DbSession, actor: RxReader, patient_id: RowId) -> list[PdmpOut]:
    return [_pdmp_out(c) for c in prescriptions.patient_prescribing(db, actor, patient_id).pdmp_checks]


@router.post(
    "/api/v1/patients/{patient_id}/pdmp-checks", response_model=PdmpOut, status_code=201, tags=["prescribing"]
)
def api_pdmp_add(db: DbSession, actor: RxWriter, patient_id: RowId, body: PdmpIn) -> PdmpOut:
    return _pdmp_out(encounters.record_pdmp(db, actor, patient_id, body))
