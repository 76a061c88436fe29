"""``python -m normlab``: the command line."""

from normlab.cli import app

app(prog_name="normlab")
