"""``ketacare fhir export``: the same exporter in the foreground, files and manifest in a
directory; bad arguments are a clear message and exit code 2, writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ketacare.cli import app
from tests.interop_fhir.conftest import DemoFhir, validate

runner = CliRunner()


@pytest.fixture
def cli_env(demo_fhir: DemoFhir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DemoFhir:
    monkeypatch.setenv("KETACARE_ENVIRONMENT", "test")
    monkeypatch.setenv("KETACARE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KETACARE_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("KETACARE_DATABASE_URL", demo_fhir.engine.url.render_as_string(hide_password=False))
    return demo_fhir


def test_cli_export_writes_ndjson_and_the_manifest(cli_env: DemoFhir, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["fhir", "export", "--out", str(out), "--clinic", "north", "--type", "Patient,Group"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    counts = {o["type"]: o["count"] for o in manifest["output"]}
    assert counts["Patient"] == 12 and counts["Group"] >= 1
    for item in manifest["output"]:
        lines = (out / item["url"]).read_text().splitlines()
        assert len(lines) == item["count"]
        for line in lines:
            validate(json.loads(line))
    assert "Exported" in result.output and "Patient" in result.output


def test_cli_group_export_holds_only_members(cli_env: DemoFhir, tmp_path: Path) -> None:
    groups = [
        e["resource"] for e in cli_env.get("/fhir/R4/Group").get("entry", []) if e["resource"].get("member")
    ]
    chosen = groups[0]
    members = {m["entity"]["reference"] for m in chosen["member"]}
    out = tmp_path / "group"
    result = runner.invoke(
        app,
        [
            "fhir",
            "export",
            "--out",
            str(out),
            "--clinic",
            "north",
            "--group",
            chosen["id"],
            "--type",
            "Patient",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = (out / "Patient.ndjson").read_text().splitlines()
    assert {f"Patient/{json.loads(line)['id']}" for line in lines} == members


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--clinic", "nowhere"], "nowhere"),
        (["--clinic", "north", "--type", "Unicorn"], "Unicorn"),
        (["--clinic", "north", "--since", "last week"], "instant"),
        (["--clinic", "north", "--since", "9999-12-31T23:59:59-01:00"], "outside the years 1 to 9999"),
        (["--clinic", "north", "--since", "0001-01-01T00:00:00+01:00"], "outside the years 1 to 9999"),
        (["--clinic", "north", "--type", ",,"], "--type names no resource type"),
        (["--clinic", "north", "--group", "protocol-none"], "protocol-none"),
        (["--clinic", "north", "--group", "protocol-x", "--type", "Group"], "not patient data"),
        ([], "--clinic"),
    ],
)
def test_cli_refuses_bad_arguments_with_exit_code_2(
    cli_env: DemoFhir, tmp_path: Path, args: list[str], words: str
) -> None:
    out = tmp_path / "bad"
    result = runner.invoke(app, ["fhir", "export", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("types", "level_args"),
    [("Unicorn", []), ("Group", ["--group", "protocol-x"])],
)
def test_cli_refuses_types_in_the_kick_offs_words(
    cli_env: DemoFhir, tmp_path: Path, types: str, level_args: list[str]
) -> None:
    """One check for the types, the kick-off's: the command says what the API says."""
    path = "/fhir/R4/$export" if not level_args else "/fhir/R4/Patient/$export"
    api = cli_env.client.get(
        path, params={"_type": types}, headers={**cli_env.headers, "Prefer": "respond-async"}
    )
    assert api.status_code == 400
    said = api.json()["issue"][0]["diagnostics"].replace("_type", "--type")
    if level_args:  # the command's --group is a group-level export
        said = said.replace("patient-level", "group-level")
    result = runner.invoke(
        app,
        ["fhir", "export", "--out", str(tmp_path / "x"), "--clinic", "north", "--type", types, *level_args],
    )
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split())
