"""``python -m wachat_async``: the wachat command."""

import sys

from .cli import main

sys.exit(main())
