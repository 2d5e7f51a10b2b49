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


def test_export_deidentified(env: Path) -> None:
    out = env / "export"
    result = runner.invoke(app, ["export", "deidentified", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "data_dictionary.csv").exists() and (out / "patients.parquet").exists()


def test_send_due_without_smtp(env: Path) -> None:
    result = runner.invoke(app, ["outcomes", "send-due", "--base-url", "http://clinic"])
    assert result.exit_code == 0 and "0 links issued" in result.output
