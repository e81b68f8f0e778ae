"""The image names and tags agree everywhere: what `make images` builds (images/build.py, the chart's appVersion),
what the chart deploys by default, the trainer image a study defaults to, and the package version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from types import ModuleType

import yaml

from sweetspot.api.names import DEFAULT_TRAINER_IMAGE

from support import by_path

ROOT = Path(__file__).resolve().parents[2]


def _build() -> ModuleType:
    return by_path.load("images/build.py", "images_build")


def test_the_chart_deploys_what_make_images_builds() -> None:
    build = _build()
    chart = yaml.safe_load((ROOT / "charts" / "sweetspot" / "Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "charts" / "sweetspot" / "values.yaml").read_text())
    names = {image.name for image in build.IMAGES}
    assert names == {"sweetspot-operator", "sweetspot-trainer"}
    assert build.app_version() == chart["appVersion"]
    assert values["image"]["repository"] == "sweetspot-operator" and values["image"]["tag"] == ""
    assert f"sweetspot-trainer:{chart['appVersion']}" == DEFAULT_TRAINER_IMAGE


def test_the_package_version_is_the_charts_app_version() -> None:
    chart = yaml.safe_load((ROOT / "charts" / "sweetspot" / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == chart["appVersion"]


def test_each_dockerfile_declares_its_default_base_and_the_wheelhouse_arguments() -> None:
    build = _build()
    for image in build.IMAGES:
        text = (ROOT / image.dockerfile).read_text()
        assert re.search(r"^ARG BASE_IMAGE=\S+", text, re.M), image.dockerfile
        assert "ARG WHEELS=images/wheelhouse" in text and "ARG OFFLINE=" in text, image.dockerfile
        assert f"-t {image.name}:" in text, f"{image.dockerfile}'s build comment names another tag"
    assert (ROOT / "images" / "wheelhouse").is_dir()
