"""``python -m course_i18n update|check``."""

import sys

from course_i18n.catalog import main

sys.exit(main())
