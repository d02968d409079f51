"""The Guide contract, applied automatically to every guide discovered in the ``editkit.guides`` group.

A newly installed guide is covered without editing this file. A guide whose plugin fails to import
fails here with its error. Guides keep this cheap with ``contract_options()`` (tiny weights, few
steps) and ``contract_request(image)`` (extra inputs) classmethods; see ``editkit.testing``.
"""
from __future__ import annotations

import pytest

from editkit import registry
from editkit.testing import DummyGuide, DummyMaskGuide, GuideContract, register_guide

DISCOVERED = registry.names()


def test_something_is_discovered():
    assert "tonal" in DISCOVERED, "the example plugin is not installed (pip install -e plugins/editkit-example-guide)"


class TestEveryDiscoveredGuide(GuideContract):
    @pytest.fixture(params=DISCOVERED)
    def guide_name(self, request) -> str:
        return request.param


class TestDummyGuides(GuideContract):
    """The contract suite itself, on the in-process test guides (one with a required mask)."""

    @pytest.fixture(params=[("dummy", DummyGuide), ("dummy-mask", DummyMaskGuide)], ids=["dummy", "dummy-mask"])
    def guide_name(self, request):
        name, cls = request.param
        with register_guide(name, cls):
            yield name
