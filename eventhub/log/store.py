"""The storage port, as it was named before ``log/base.py``: kept so code written against
``eventhub.log.store`` (a backend in progress) still imports. New code imports
``eventhub.log.base`` and ``eventhub.log.records``."""

from __future__ import annotations

from eventhub.log.base import (
    Catalogue,
    Credentials,
    DeliveryStore,
    EventLog,
    Hooks,
    Instances,
    ProcessStore,
    Store,
    SubscriptionStore,
    TriggerIndex,
)
from eventhub.log.records import KeyRecord, Pruned, SourceRecord

__all__ = [
    "Catalogue",
    "Credentials",
    "DeliveryStore",
    "EventLog",
    "Hooks",
    "Instances",
    "KeyRecord",
    "ProcessStore",
    "Pruned",
    "SourceRecord",
    "Store",
    "SubscriptionStore",
    "TriggerIndex",
]
