"""`python -m eval_core`: see eval_core/cli.py."""

import sys

from eval_core.cli import main

sys.exit(main())
