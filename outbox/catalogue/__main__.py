"""`python -m outbox.catalogue write|check`."""

from __future__ import annotations

import sys

from outbox.catalogue.cli import main

sys.exit(main())
