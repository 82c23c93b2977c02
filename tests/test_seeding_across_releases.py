"""What seed_all relies on in Theano's stream classes, checked in each release's real source.

Only Theano 1.0.5 runs here (older releases do not import on Python 3.11), so
these are the facts behind running the same seeding code on 0.7-1.0.x.
"""

from __future__ import annotations

import re

import pytest

RELEASES = ["0.7.0", "0.8.2", "0.9.0", "1.0.0", "1.0.5"]


def method_signature(source: str, class_name: str, method: str) -> str | None:
    """`def method(...)` inside `class class_name`, or None."""
    body = re.search(rf"^class {class_name}\b.*?(?=^class |\Z)", source, re.S | re.M).group(0)
    found = re.search(rf"^    def {method}\((.*?)\):", body, re.M)
    return found.group(1) if found else None


@pytest.mark.parametrize("name", RELEASES)
def test_random_streams_draws_member_seeds_from_gen_seedgen_below_2_to_30(release, name):
    # seed_all reseeds a RandomStreams by redrawing its states from gen_seedgen, as gen() does
    source = (release(name) / "tensor" / "shared_randomstreams.py").read_text()
    assert "self.gen_seedgen = " in source
    assert re.search(r"seed = int\(self\.gen_seedgen\.randint\(2 ?\*\* ?30\)\)", source)
    assert "self.state_updates.append(out.update)" in source


@pytest.mark.parametrize("name", RELEASES)
def test_mrg_streams_can_be_reseeded_from_0_8_on(release, name):
    source = (release(name) / "sandbox" / "rng_mrg.py").read_text()
    seed = method_signature(source, "MRG_RandomStreams", "seed")
    substreams = method_signature(source, "MRG_RandomStreams", "get_substream_rstates")
    assert "class mrg_uniform_base(" in source  # how dropped streams' states are recognised
    if name == "0.7.0":  # no seed(): seed_all sets rstate for later draws and says so
        assert seed is None
        assert substreams == "self, n_streams, inc_rstate=True"
    else:
        assert seed == "self, seed=None"
        assert substreams == "self, n_streams, dtype, inc_rstate=True"


@pytest.mark.parametrize("name", RELEASES)
def test_variables_are_numbered_in_creation_order(release, name):
    # dropped streams' states are keyed by this number's rank
    source = (release(name) / "gof" / "graph.py").read_text()
    assert "self.auto_name = 'auto_' + str(next(self.__count__))" in source
