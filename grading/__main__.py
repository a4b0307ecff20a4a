"""``python -m grading``: the grading subcommands of the ``cloudmart`` CLI."""

import sys

from grading.cli import main

sys.exit(main())
