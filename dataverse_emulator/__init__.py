"""A local emulator of the Dataverse Web API subset the hydration product uses.

It serves the tables Customer Insights - Data writes (``msdynci_customerprofile``,
``msdynci_alternatekey``) and the source tables (``contact``, ``lead``) over real HTTP, with the
documented shapes, headers and errors, plus switchable modes for what the documentation leaves open.
See docs/emulator.md.
"""

from .organization import SeedParams
from .server import EmulatorServer

__all__ = ["EmulatorServer", "SeedParams"]
