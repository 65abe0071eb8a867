"""Bulk jobs: provisioning many instances, broadcasting to many recipients, and the journal
that keeps either from doing anything twice."""

from .broadcast import (
    BroadcastProgress,
    BroadcastResult,
    BroadcastStatus,
    InstanceWait,
    Pace,
    SendSpec,
    WaitReason,
    opt_out_number,
    render_template,
)
from .dedupe import DuplicateGroup
from .journal import Journal, MessageEntry, ProvisionEntry
from .provision import ProvisionProgress, ProvisionResult

__all__ = [
    "BroadcastProgress",
    "BroadcastResult",
    "BroadcastStatus",
    "DuplicateGroup",
    "InstanceWait",
    "Journal",
    "MessageEntry",
    "Pace",
    "ProvisionEntry",
    "ProvisionProgress",
    "ProvisionResult",
    "SendSpec",
    "WaitReason",
    "opt_out_number",
    "render_template",
]
