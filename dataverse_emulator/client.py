"""A small HTTP client for a running emulator: the control API, and Web API sessions as a user.

Tests and benchmarks use it to set a scene (reset, modes, re-unify, clock, limits, faults) and to check
the end state (links, stats) over HTTP, exactly as they would against a separately started emulator.
"""

from __future__ import annotations

from typing import Any

import requests

API_PATH = "/api/data/v9.2/"


class ControlCallError(RuntimeError):
    """The control API refused a request; ``status`` is the HTTP status it answered."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class WebApi(requests.Session):
    """A ``requests`` session for the Web API as one user: bearer token and OData headers set.

    Paths are relative to ``/api/data/v9.2/``; absolute URLs (next links) are used as given.
    """

    def __init__(self, base_url: str, user: str) -> None:
        super().__init__()
        self.api_url = base_url.rstrip("/") + API_PATH
        self.headers.update(
            {
                "Authorization": f"Bearer {user}",
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
            }
        )

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """Send a request, resolving a relative path against the Web API root."""
        text = url.decode() if isinstance(url, bytes) else url
        if not text.startswith("http"):
            text = self.api_url + text.lstrip("/")
        kwargs.setdefault("timeout", 60)
        return super().request(method, text, *args, **kwargs)


class EmulatorClient:
    """The control API of an emulator at ``base_url`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = requests.Session()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: str) -> Any:
        response = self._http.request(
            method, f"{self.base_url}/_emulator/{path}", json=body, params=params or None, timeout=300
        )
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code != 200 or not isinstance(payload, dict):
            message = payload.get("error") if isinstance(payload, dict) else None
            raise ControlCallError(str(message or response.text), response.status_code)
        return payload

    def web_api(self, user: str = "hydration-app") -> WebApi:
        """A Web API session acting as ``user``."""
        return WebApi(self.base_url, user)

    def reset(
        self,
        *,
        contacts: int,
        leads: int,
        seed: int = 1,
        modes: dict[str, Any] | None = None,
        orphans: dict[str, float] | None = None,
    ) -> Any:
        """Rebuild and reseed; ``modes`` may include the seed-time ones.

        ``orphans`` deletes a share of each named table's mapped rows; their mapping rows stay.
        """
        body = {"contacts": contacts, "leads": leads, "seed": seed, "modes": modes or {}}
        return self._call("POST", "reset", {**body, "orphans": orphans} if orphans else body)

    def modes(self, **changes: Any) -> dict[str, Any]:
        """Change live modes (none: just read them)."""
        if not changes:
            return dict(self._call("GET", "modes"))
        return dict(self._call("PATCH", "modes", changes))

    def reunify(
        self, fraction: float, *, seed: int = 1, defer_profiles: bool = False, spread_seconds: float = 0
    ) -> dict[str, int]:
        """Re-unify a fraction of the mapping; returns the change counts."""
        body = {
            "fraction": fraction,
            "seed": seed,
            "defer_profiles": defer_profiles,
            "spread_seconds": spread_seconds,
        }
        return dict(self._call("POST", "reunify", body)["changes"])

    def publish_deferred(self) -> int:
        """Write the profiles a deferred re-unification held back."""
        return int(self._call("POST", "publish-deferred")["published"])

    def links(self, table: str, *, rows: str = "wrong", lookup: str | None = None) -> dict[str, Any]:
        """The truth for a table: summary counts and the rows asked for (all, wrong or none)."""
        if lookup:
            return dict(self._call("GET", "links", table=table, rows=rows, lookup=lookup))
        return dict(self._call("GET", "links", table=table, rows=rows))

    def stats(self) -> dict[str, Any]:
        """Request and row counters."""
        return dict(self._call("GET", "stats"))

    def reset_stats(self) -> None:
        """Zero the counters."""
        self._call("POST", "stats/reset")

    def sources(self) -> list[dict[str, Any]]:
        """The seeded CI-D data sources."""
        return list(self._call("GET", "sources")["sources"])

    def advance_clock(self, seconds: float) -> int:
        """Move server time forward; returns it in epoch microseconds."""
        return int(self._call("POST", "clock", {"advance_seconds": seconds})["now_micros"])

    def now(self) -> int:
        """Server time in epoch microseconds."""
        return int(self._call("GET", "clock")["now_micros"])

    def limits(self, **changes: Any) -> dict[str, Any]:
        """Change the service protection limits, cost model or time factor (none: just read them).

        The answer is the settings plus ``usage``: each user's current window.
        """
        if not changes:
            return dict(self._call("GET", "limits"))
        return dict(self._call("PATCH", "limits", changes))

    def faults(self, rules: list[dict[str, Any]] | None = None, *, seed: int = 0) -> dict[str, Any]:
        """Replace the fault rules (``None``: just read them, with each rule's matched and fired counts)."""
        if rules is None:
            return dict(self._call("GET", "faults"))
        return dict(self._call("PUT", "faults", {"rules": rules, "seed": seed}))

    def register_step(self, **fields: Any) -> str:
        """Register a custom plug-in step (``table``, ``message``, ``stage``, ``mode``, ...); its id."""
        return str(self._call("POST", "plugin-steps", fields)["id"])

    def register_flow(self, **fields: Any) -> str:
        """Register a cloud flow with a Dataverse trigger (``table``, ``message`` 1-7, ...); its id."""
        return str(self._call("POST", "flows", fields)["id"])

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._call("DELETE", "faults")
