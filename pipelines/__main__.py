"""`python -m pipelines` is the `mirmatch` command."""

import sys

from pipelines.cli import main

sys.exit(main())
