"""`python -m ketacare` is the `ketacare` command."""

from ketacare.cli import app

app(prog_name="ketacare")
