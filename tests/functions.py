"""The Functions app's functions by name, indexed once for the whole test session.

The SDK indexes an app once: a second ``app.get_functions()`` in the same process raises, so every test
that looks at the functions goes through this cache.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def app_functions() -> dict[str, Any]:
    """``{name: Function}`` of ``function_app.app``."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}
