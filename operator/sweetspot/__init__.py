"""Sweetspot's control plane: the FineTuneStudy API, the planner, and the shells that drive it."""

from sweetspot.api import __version__

__all__ = ["__version__"]
