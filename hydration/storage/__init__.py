"""Queues and state for the hydration: Azure Storage adapters, their in-memory fakes, a local driver.

The planner and worker depend on the ``StateTables`` and ``TaskQueue`` interfaces only; production wires
``AzureStateTables``/``AzureTaskQueue`` (identity in Azure, a connection string locally), unit tests the
``Memory*`` fakes. Every failure surfaces as a ``StorageError`` subclass, never as an ``azure.core`` one.
"""

from hydration.storage.driver import Delivery, DeliveryOutcome, DrainStats, QueueDriver
from hydration.storage.errors import (
    ConflictError,
    InvalidStorageKeyError,
    StorageError,
    StorageUnavailableError,
)
from hydration.storage.queues import (
    AzureTaskQueue,
    MemoryTaskQueue,
    Received,
    TaskQueue,
    poison_queue_name,
)
from hydration.storage.tables import AzureStateTables, MemoryStateTables, StateTables, StoredEntity

__all__ = [
    "AzureStateTables",
    "AzureTaskQueue",
    "ConflictError",
    "Delivery",
    "DeliveryOutcome",
    "DrainStats",
    "InvalidStorageKeyError",
    "MemoryStateTables",
    "MemoryTaskQueue",
    "QueueDriver",
    "Received",
    "StateTables",
    "StorageError",
    "StorageUnavailableError",
    "StoredEntity",
    "TaskQueue",
    "poison_queue_name",
]
