"""Switches for what the public documentation leaves open, so tests can run under each behaviour.

Each mode names a question a real organization settles (docs/real-org-checklist.md gives the query
that settles it). ``SEED_MODES`` shape the seeded data and apply on reset; the rest apply at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .values import Precision

PROFILE_PARTITIONS = ("none", "custom")
BIND_WITHOUT_PARTITION = ("resolve", "not_found", "dangling")
PAGING = ("keyset", "offset", "snapshot")
CID_LOOKUP = ("absent", "present")
BIND_NULL = ("ignored", "refused", "server_error")

SEED_MODES = frozenset({"profile_partitions", "cid_lookup", "cid_lookup_navigation_property"})


class ModeError(ValueError):
    """A mode name or value the emulator does not know."""


@dataclass
class Modes:
    """The current behaviour of every open question."""

    profile_partitions: str = "none"
    """``none``: profile rows have no custom partition id; ``custom``: each has one, and a bind
    should name it."""
    bind_without_partition: str = "not_found"
    """With custom partition ids, what a bind by GUID alone does: ``resolve`` finds the row anyway,
    ``not_found`` answers 404 as the default partition holds no such row, ``dangling`` stores the GUID
    without a partition id and succeeds."""
    elastic_read_lag_seconds: float = 0.0
    """How long elastic-table writes stay invisible to other users' reads."""
    paging: str = "keyset"
    """``keyset``: a next page continues after the last row's sort values (rows that move ahead
    repeat, rows that move behind are skipped); ``offset``: a next page skips the rows already served
    (deletions skip rows, insertions repeat them); ``snapshot``: pages follow the first page's result."""
    modifiedon_precision: str = Precision.HIDDEN_MILLISECOND.value
    """``second``, ``millisecond`` or ``hidden-millisecond`` (kept in ms, shown in whole seconds)."""
    cid_lookup: str = "absent"
    """``present``: contact and lead already have CI-D's lookup to the profile table at seed time."""
    cid_lookup_navigation_property: str = "msdynci_lookupfield_customerprofile"
    """The navigation property name CI-D's lookup has, when present (it is case-sensitive)."""
    update_multiple: dict[str, bool] = field(
        default_factory=lambda: {"contact": True, "lead": True, "msdynci_customerprofile": True}
    )
    """Which tables support ``UpdateMultiple`` (answered by ``sdkmessagefilters`` and enforced)."""
    bind_null: str = "ignored"
    """What ``"<nav>@odata.bind": null`` does: ``ignored`` (204, nothing changes), ``refused``
    (400), ``server_error`` (500)."""
    metadata_delay_seconds: float = 0.0
    """How long a new relationship and lookup stay invisible without ``Consistency: Strong``."""
    dop_hint: int = 4
    """The ``x-ms-dop-hint`` answer header."""
    users: list[str] | None = None
    """Users that are members of the organization (``None``: any caller is)."""
    privileges: dict[str, dict[str, str | None]] = field(default_factory=dict)
    """Per user, privileges taken away (``null``) or held at a lower depth (``Basic``, ``Local``,
    ``Deep``) in ``RetrieveUserPrivileges``; every other privilege is held at ``Global``."""
    short_pages: int | dict[str, int] | None = None
    """``None``: pages are full; a seed (``7`` or ``{"seed": 7}``): every collection query serves
    pages of varied sizes below the page size while rows remain, as elastic tables do."""

    def to_json(self) -> dict[str, Any]:
        """The modes as the control API answers them."""
        return asdict(self)

    def update(self, changes: dict[str, Any], *, allow_seed: bool) -> None:
        """Apply a partial update after validating every name and value; nothing changes on error."""
        known = {f.name for f in fields(self)}
        for name in changes:
            if name not in known:
                raise ModeError(f"unknown mode {name!r}; known: {', '.join(sorted(known))}")
            if name in SEED_MODES and not allow_seed:
                raise ModeError(f"mode {name!r} shapes the seeded data: pass it to reset instead")
        candidate = Modes(**{**asdict(self), **changes})
        candidate.validate()
        for name in changes:
            setattr(self, name, getattr(candidate, name))

    def validate(self) -> None:
        """Raise ``ModeError`` naming the first invalid value."""
        choices = {
            "profile_partitions": PROFILE_PARTITIONS,
            "bind_without_partition": BIND_WITHOUT_PARTITION,
            "paging": PAGING,
            "cid_lookup": CID_LOOKUP,
            "bind_null": BIND_NULL,
            "modifiedon_precision": tuple(p.value for p in Precision),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ModeError(f"mode {name!r} must be one of {', '.join(allowed)}")
        for name in ("elastic_read_lag_seconds", "metadata_delay_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ModeError(f"mode {name!r} must be a number of seconds >= 0")
        if isinstance(self.dop_hint, bool) or not isinstance(self.dop_hint, int) or self.dop_hint < 1:
            raise ModeError("mode 'dop_hint' must be an integer >= 1")
        if not isinstance(self.update_multiple, dict) or not all(
            isinstance(k, str) and isinstance(v, bool) for k, v in self.update_multiple.items()
        ):
            raise ModeError("mode 'update_multiple' must map table names to true or false")
        if self.users is not None and not (
            isinstance(self.users, list) and all(isinstance(u, str) for u in self.users)
        ):
            raise ModeError("mode 'users' must be null or a list of user names")
        if not _valid_privileges(self.privileges):
            raise ModeError(
                "mode 'privileges' must map users to {privilege name: null or Basic, Local, Deep, Global}"
            )
        if self.short_pages is not None and _seed_of(self.short_pages) is None:
            raise ModeError("mode 'short_pages' must be null, an integer seed or {\"seed\": integer}")
        nav = self.cid_lookup_navigation_property
        if not isinstance(nav, str) or not nav.replace("_", "").isalnum():
            raise ModeError("mode 'cid_lookup_navigation_property' must be a valid name")

    @property
    def precision(self) -> Precision:
        """The date-time precision as an enum."""
        return Precision(self.modifiedon_precision)

    @property
    def short_pages_seed(self) -> int | None:
        """The seed of short pages, or ``None`` when pages are full."""
        return None if self.short_pages is None else _seed_of(self.short_pages)


def _seed_of(value: Any) -> int | None:
    """The integer seed a ``short_pages`` value names (``7`` or ``{"seed": 7}``), else ``None``."""
    if isinstance(value, dict) and set(value) == {"seed"}:
        value = value["seed"]
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _valid_privileges(value: Any) -> bool:
    """Whether a ``privileges`` mode value is ``{user: {privilege: None | depth}}``."""
    depths = (None, "Basic", "Local", "Deep", "Global")
    return isinstance(value, dict) and all(
        isinstance(user, str)
        and isinstance(held, dict)
        and all(isinstance(name, str) and depth in depths for name, depth in held.items())
        for user, held in value.items()
    )
