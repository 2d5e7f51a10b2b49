"""``ketacare report registry`` and ``ketacare export deidentified`` on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ketacare.cli import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KETACARE_ENVIRONMENT", "test")
    monkeypatch.setenv("KETACARE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("KETACARE_DATABASE_URL", raising=False)
    monkeypatch.setenv("KETACARE_SECRET_KEY", "k" * 40)
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    assert (
        runner.invoke(
            app, ["clinic", "create", "--name", "North", "--slug", "north", "--record-prefix", "NSP"]
        ).exit_code
        == 0
    )
    return tmp_path


def test_report_registry_writes_html_and_csv(env: Path) -> None:
    out = env / "report"
    result = runner.invoke(app, ["report", "registry", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {
        "registry.html",
        "summary.csv",
        "adverse_events.csv",
        "relief.csv",
    }
    assert "Plotly" in (out / "registry.html").read_text()
    assert runner.invoke(app, ["report", "registry", "--out", str(out), "--clinic", "north"]).exit_code == 0
    bad = runner.invoke(app, ["report", "registry", "--out", str(out), "--clinic", "nowhere"])
    assert bad.exit_code == 2


def test_export_safe_harbor(env: Path) -> None:
    out = env / "export"
    result = runner.invoke(app, ["export", "safe-harbor", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "data_dictionary.csv").exists() and (out / "patients.parquet").exists()
    assert "SAFE HARBOR" in (out / "README.txt").read_text()


def test_a_limited_data_set_needs_an_active_agreement(env: Path) -> None:
    out = env / "lds"
    refused = runner.invoke(
        app, ["export", "limited", "--out", str(out), "--agreement", "1", "--clinic", "north"]
    )
    assert refused.exit_code == 2 and not out.exists(), refused.output
    add = ["agreement", "add", "--clinic", "north", "--recipient", "Univ. research group",
           "--purpose", "ketamine outcomes study", "--approved-by", "Privacy officer"]  # fmt: skip
    bad = runner.invoke(app, [*add, "--starts-on", "2026-02-01", "--ends-on", "2026-01-01"])
    assert bad.exit_code == 2 and "end before" in bad.output
    ok = runner.invoke(app, [*add, "--starts-on", "2020-01-01", "--ends-on", "2099-01-01"])
    assert ok.exit_code == 0, ok.output
    number = ok.output.split("#")[1].split()[0]
    listed = runner.invoke(app, ["agreement", "list", "--clinic", "north"])
    assert f"#{number} Univ. research group" in listed.output
    done = runner.invoke(
        app, ["export", "limited", "--out", str(out), "--agreement", number, "--clinic", "north"]
    )
    assert done.exit_code == 0, done.output
    assert f"#{number} with Univ. research group" in (out / "README.txt").read_text()


def test_send_due_without_smtp(env: Path) -> None:
    result = runner.invoke(app, ["outcomes", "send-due", "--base-url", "http://clinic"])
    assert result.exit_code == 0 and "0 links issued" in result.output
