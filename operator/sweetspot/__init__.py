"""Sweetspot's control plane: the FineTuneStudy API, the planner, and the shells that drive it.

Kept import-free: the trainer image imports `sweetspot.contract` and must not pull in the rest.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sweetspot")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
