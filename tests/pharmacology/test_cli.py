"""The simulate command, registered on a small Typer app the way ketacare.cli does."""

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ketacare.pharmacology.cli import simulate

app = typer.Typer()
app.command("simulate")(simulate)


@app.command("version")
def _version() -> None:
    """A second command so that Typer keeps the sub-command name."""


runner = CliRunner()
INFUSION = "route=iv_infusion,rate_mg_per_kg_h=0.75,start_min=0,duration_min=40"


def test_table_output() -> None:
    result = runner.invoke(app, ["simulate", "--dose", INFUSION, "--weight", "82", "--times", "5,40,60"])
    assert result.exit_code == 0, result.output
    assert "analgesia" in result.stdout
    assert "onset" in result.stdout


def test_json_output_and_rate_conversion() -> None:
    result = runner.invoke(app, ["simulate", "--dose", INFUSION, "--weight", "82", "--json", "--times", "40"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["doses"][0]["dose_mg"] == pytest.approx(0.75 * 82 * 40 / 60)
    assert data["timings"]["analgesia"]["onset_min"] > 0
    assert len(data["cp_ng_per_ml"]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dose", "route=iv_bolus,dose_mg=-5"], "dose_mg must be positive"),
        (["--dose", "route=spray,dose_mg=5"], "unknown route"),
        (
            ["--dose", "route=iv_bolus,dose_mg=5", "--model", "herd2007", "--weight", "90"],
            "above the Herd 2007",
        ),
        (
            ["--dose", INFUSION, "--dose", "route=iv_infusion,dose_mg=10,start_min=20,duration_min=30"],
            "overlaps",
        ),
        (["--dose", "route=iv_bolus,amount=5"], "bad --dose"),
        (["--dose", "route=iv_bolus,dose_mg=five"], "bad --dose"),
        (["--dose", "route=topical,dose_mg=5"], "no systemic simulation"),
        (["--dose", "route=iv_bolus,dose_mg=5", "--sex", "x"], "sex"),
        (["--dose", "route=iv_bolus,dose_mg=5", "--plot", "out.svg"], "png or .html"),
        (["--dose", "route=iv_bolus,dose_mg=5", "--times", "5,2"], "increasing"),
    ],
)
def test_bad_input_one_line_error_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["simulate", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert message in lines[0]


def test_allow_extrapolation_turns_error_into_warning() -> None:
    result = runner.invoke(
        app,
        [
            "simulate",
            "--dose",
            "route=iv_bolus,dose_mg=5",
            "--model",
            "herd2007",
            "--weight",
            "90",
            "--allow-extrapolation",
        ],
    )
    assert result.exit_code == 0
    assert "warning:" in result.stderr


def test_population_summary(tmp_path: Path) -> None:
    out = tmp_path / "pop.html"
    result = runner.invoke(
        app, ["simulate", "--dose", INFUSION, "--population", "300", "--end-min", "120", "--plot", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "P(analgesic band reached without crossing" in result.stdout
    html = out.read_text()
    assert '<script src="http' not in html
    assert "Plotly" in html


def test_html_plot_is_offline(tmp_path: Path) -> None:
    out = tmp_path / "sim.html"
    result = runner.invoke(app, ["simulate", "--dose", INFUSION, "--plot", str(out)])
    assert result.exit_code == 0
    html = out.read_text()
    assert '<script src="http' not in html
