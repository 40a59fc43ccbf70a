"""The Bicep in ``infra/`` read as data with pycep-parser, and the checks the infra tests share.

pycep keeps Bicep's distinction between a literal and a reference: a reference (a parameter, variable or
resource name) is a ``BicepElement``, a literal is a plain ``str``/``bool``/``int``, and an interpolated
string stays as written (``'ClientId=${identityClientId};...'``). The check functions return a list of
problems (empty when all is well), so the tests can also show that a broken copy is caught.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pycep import BicepParser
from pycep.transformer import BicepElement

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

FORBIDDEN_ON_FLEX = ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION")
APP_PREFIXES = ("HYDRATION_", "DATAVERSE_")


@functools.cache
def _parse(path: Path) -> dict[str, Any]:
    return dict(BicepParser().parse(file_path=path))


def parse(relative: str) -> dict[str, Any]:
    """A fresh (mutable) copy of one parsed Bicep file under ``infra/``."""
    return copy.deepcopy(_parse(INFRA / relative))


def is_ref(value: object, name: str) -> bool:
    """``value`` is a reference to the parameter, variable or resource ``name``."""
    return isinstance(value, BicepElement) and value == name


def is_literal(value: object, expected: object) -> bool:
    """``value`` is the literal ``expected`` (never a reference that happens to have that name)."""
    return not isinstance(value, BicepElement) and value == expected


def body(element: Mapping[str, Any]) -> dict[str, Any]:
    """The declared body of a resource or module, past a condition (``if``) or a loop (``for``)."""
    config = dict(element["config"])
    while "config" in config and ("condition" in config or "loop_type" in config):
        config = dict(config["config"])
    return config


def condition(element: Mapping[str, Any]) -> Any:
    """The ``if (...)`` of a conditional resource or module, or None."""
    return element["config"].get("condition")


def resources_of(template: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """The resources of one type (``Microsoft.Web/sites``), by symbolic name."""
    found = template.get("resources", {})
    return {name: r for name, r in found.items() if r["type"] == resource_type and not r["existing"]}


def the_resource(template: Mapping[str, Any], resource_type: str) -> dict[str, Any]:
    """The only resource of a type; fails when there is none or several."""
    found = resources_of(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.values()))


def app_settings(template: Mapping[str, Any]) -> dict[str, Any]:
    """The app settings declared on the site (``config`` named ``appsettings``), literal object parts.

    ``union(a, {...}, {...})`` is read as its object literals merged in order (later wins, as in Bicep);
    references among the arguments (extra settings passed in as a parameter) contribute no names.
    """
    configs = [
        body(r)
        for r in resources_of(template, "Microsoft.Web/sites/config").values()
        if is_literal(body(r).get("name"), "appsettings")
    ]
    assert len(configs) == 1, f"expected one appsettings resource, found {len(configs)}"
    properties = configs[0]["properties"]
    merged: dict[str, Any] = {}
    for part in _object_parts(properties):
        merged.update(part)
    return merged


def _object_parts(value: Any) -> Iterable[dict[str, Any]]:
    if isinstance(value, dict) and set(value) == {"function"}:
        function = value["function"]
        assert function["type"] == "union", f"app settings built with {function['type']}(), not union()"
        for argument in function["parameters"].values():
            yield from _object_parts(argument)
    elif isinstance(value, dict):
        yield value


def missing_deployed_settings(settings: Iterable[Any], declared: Mapping[str, Any]) -> list[str]:
    """Settings marked ``deployed=True`` in ``hydration.settings.SETTINGS`` that the deployment omits.

    A literal empty string counts as omitted: the app would read it as unset.
    """
    given = {name for name, value in declared.items() if not is_literal(value, "")}
    return sorted(s.name for s in settings if s.deployed and s.name not in given)


def unknown_app_settings(declared: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    """``HYDRATION_*``/``DATAVERSE_*`` app settings the app does not read (a typo, or a removed setting)."""
    known = set(names)
    return sorted(k for k in declared if k.startswith(APP_PREFIXES) and k not in known)


def forbidden_settings(declared: Mapping[str, Any]) -> list[str]:
    """Settings that must not be set on Flex Consumption, and anything that looks like a key."""
    found = [k for k in declared if k in FORBIDDEN_ON_FLEX]
    found += [
        k
        for k, v in declared.items()
        if isinstance(v, str) and re.search(r"AccountKey=|SharedAccessSignature=", v)
    ]
    return sorted(found)


def accessor(value: Any) -> str | None:
    """A property access written out (``storage.properties.primaryEndpoints.blob``), or None."""
    if isinstance(value, BicepElement):
        return str(value)
    if (
        isinstance(value, dict)
        and set(value) == {"operator"}
        and value["operator"]["type"] == "property_accessor"
    ):
        operands = value["operator"]["operands"]
        left, right = accessor(operands["operand_1"]), accessor(operands["operand_2"])
        return f"{left}.{right}" if left and right else None
    if isinstance(value, str):
        return value
    return None


def accessors(value: Any) -> set[str]:
    """Every property access (``storage.outputs.name``) anywhere inside a parsed value."""
    found: set[str] = set()
    written = accessor(value) if isinstance(value, dict) else None
    if written:
        found.add(written)
    elif isinstance(value, dict):
        for item in value.values():
            found |= accessors(item)
    elif isinstance(value, list):
        for item in value:
            found |= accessors(item)
    return found


def unused_parameters(template: Mapping[str, Any]) -> list[str]:
    """Parameters that nothing in the file refers to (Bicep's no-unused-params)."""
    used: set[str] = set()
    for section in ("variables", "resources", "modules", "outputs"):
        used |= referenced_names(template.get(section, {}))
    for parameter in template.get("parameters", {}).values():
        used |= referenced_names(parameter.get("default"))
    return sorted(set(template.get("parameters", {})) - used)


def module_problems(caller: Mapping[str, Any], symbol: str, module: Mapping[str, Any]) -> list[str]:
    """A module call that passes an undeclared parameter, omits a required one, or reads a missing output."""
    passed = body(caller["modules"][symbol]).get("params", {})
    declared = module.get("parameters", {})
    problems = [
        f"{symbol}: passes undeclared parameter {name}" for name in sorted(set(passed) - set(declared))
    ]
    problems += [
        f"{symbol}: omits required parameter {name}"
        for name, parameter in sorted(declared.items())
        if parameter.get("default") is None and name not in passed
    ]
    outputs = set(module.get("outputs", {}))
    for used in sorted(accessors({k: v for k, v in caller.items() if k != "parameters"})):
        parts = used.split(".")
        if parts[0] == symbol and len(parts) > 2 and parts[1] == "outputs" and parts[2] not in outputs:
            problems.append(f"{symbol}: reads missing output {parts[2]}")
    return problems


def referenced_names(value: Any) -> set[str]:
    """Every reference (and ``${...}`` interpolation) anywhere inside a parsed value."""
    found: set[str] = set()
    if isinstance(value, BicepElement):
        found.add(str(value))
    elif isinstance(value, str):
        found.update(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", value))
    elif isinstance(value, dict):
        for item in value.values():
            found |= referenced_names(item)
    elif isinstance(value, list):
        for item in value:
            found |= referenced_names(item)
    return found
