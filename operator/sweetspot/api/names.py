"""The resource's names on the API server, and the trainer image a study runs by default."""

from __future__ import annotations

from sweetspot import __version__

GROUP = "sweetspot.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "FineTuneStudy"
PLURAL = "finetunestudies"

DEFAULT_TRAINER_IMAGE = f"sweetspot-trainer:{__version__}"
