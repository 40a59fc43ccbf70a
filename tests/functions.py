"""The Functions app's functions by name, indexed once for the whole test session.

The SDK indexes an app once: a second ``app.get_functions()`` in the same process raises, so every test
that looks at the functions goes through this cache.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def app_functions() -> dict[str, Any]:
    """``{name: Function}`` of ``function_app.app``."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def python_without_settings(*args: str) -> subprocess.CompletedProcess[str]:
    """Run this interpreter from the project root with none of the app's settings in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRATION_", "DATAVERSE_"))}
    return subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
