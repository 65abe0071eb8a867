"""What the bulk commands (``provision``, ``send broadcast``) share: the journal's default
file name and how much of a run a summary shows."""

from __future__ import annotations

#: The journal's file name when none is given (in ``--out`` for provisioning, in the current
#: folder for a broadcast): the same store, so both resume the same way.
JOURNAL_NAME = ".wachat-journal.sqlite"
#: Rows a summary shows; the manifest or the results file has them all.
SUMMARY_ROWS = 20
