"""`python -m pipelines` is the `mirmatch` command."""

from pipelines.cli import entry

entry()
