"""Calendar providers: one interface (`base.CalendarProvider`) and its implementations (`graph.GraphProvider`, …)."""

from sync.providers.base import (
    AuthError,
    CalendarChanges,
    CalendarProvider,
    DirectoryUser,
    NotFound,
    PermissionMissing,
    ProviderError,
    SyncStateLost,
    TemporaryError,
    Throttled,
    parse_retry_after,
)

__all__ = [
    "AuthError",
    "CalendarChanges",
    "CalendarProvider",
    "DirectoryUser",
    "NotFound",
    "PermissionMissing",
    "ProviderError",
    "SyncStateLost",
    "TemporaryError",
    "Throttled",
    "parse_retry_after",
]
