"""Bulk jobs: provisioning many instances, broadcasting to many recipients, and the journal
that keeps either from doing anything twice.

``campaign`` holds what a broadcast is made of and reports, ``plan`` the rules each spec is
judged by (and the plan they make of an input), ``broadcast`` the engine that sends;
``provision`` creates many instances, ``dedupe`` heals duplicates, ``journal`` remembers."""

from .campaign import (
    BroadcastProgress,
    BroadcastResult,
    BroadcastStatus,
    InstanceWait,
    Pace,
    SendSpec,
    WaitReason,
    render_template,
)
from .dedupe import DuplicateGroup
from .journal import Journal, MessageEntry, ProvisionEntry
from .plan import BroadcastPlan, opt_out_number, plan
from .provision import ProvisionProgress, ProvisionResult

__all__ = [
    "BroadcastPlan",
    "BroadcastProgress",
    "BroadcastResult",
    "BroadcastStatus",
    "DuplicateGroup",
    "Health",
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
    "plan",
    "render_template",
]
