"""Bulk jobs: provisioning many instances, broadcasting to many recipients, and the journal
that keeps either from doing anything twice."""

from .journal import Journal, MessageEntry, ProvisionEntry
from .provision import ProvisionProgress, ProvisionResult

__all__ = ["Journal", "MessageEntry", "ProvisionEntry", "ProvisionProgress", "ProvisionResult"]
