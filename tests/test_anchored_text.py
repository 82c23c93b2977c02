"""The anchored-text transform and the patch-file format around it."""

from __future__ import annotations

import pytest

from theano_det.patching import catalog
from theano_det.patching import transforms
from theano_det.patching.transforms import anchored_text

C_SOURCE = b"""int f(void) {
  algo = ALGO_0;
  err = query(algo);
  return err;
}
/* caf\xe9 in Latin-1, not UTF-8: bytes the transform must carry through untouched */
"""


def edit(anchor, replacement, count=1, name=None):
    entry = {"anchor": anchor, "replacement": replacement, "count": count}
    if name:
        entry["name"] = name
    return entry


def test_is_registered_under_its_kind():
    assert transforms.get("anchored-text") is anchored_text.apply


def test_replaces_each_anchor_and_keeps_every_other_byte():
    result = anchored_text.apply(C_SOURCE, {"edits": [
        edit("  algo = ALGO_0;\n", "  algo = ALGO_1;\n", name="algo"),
        edit("return err;", "return err ? err : 0;", name="ret"),
    ]})
    assert result.source == C_SOURCE.replace(b"ALGO_0", b"ALGO_1").replace(b"return err;", b"return err ? err : 0;")
    assert [(site.line, site.column, site.note) for site in result.sites] == [(2, 0, "algo"), (4, 2, "ret")]
    assert result.skipped == [] and result.parser == "anchored-text"


def test_an_anchor_with_the_wrong_count_means_no_edit_at_all():
    options = {"edits": [
        edit("algo", "algorithm", name="algo"),  # occurs twice
        edit("return err;", "return 0;", name="ret"),  # fine on its own, but all or nothing
    ]}
    result = anchored_text.apply(C_SOURCE, options)
    assert result.source == C_SOURCE
    assert result.sites == []
    assert [(site.line, site.column, site.note) for site in result.skipped] == [
        (2, 2, "algo: anchor found 2 time(s), expected 1"),
        (3, 14, "algo: anchor found 2 time(s), expected 1"),
    ]


def test_a_missing_anchor_is_reported_at_line_0_with_its_name():
    result = anchored_text.apply(C_SOURCE, {"edits": [edit("cudnnGetConvolutionForwardAlgorithm(\n  x", "y",
                                                              name="fwd-guess")]})
    assert result.source == C_SOURCE and result.sites == []
    (site,) = result.skipped
    assert (site.line, site.old, site.note) == (0, "cudnnGetConvolutionForwardAlgorithm( ...",
                                               "fwd-guess: anchor found 0 time(s), expected 1")


def test_overlapping_anchors_are_refused():
    result = anchored_text.apply(b"abcdef", {"edits": [edit("abcd", "X", name="a"), edit("cdef", "Y", name="b")]})
    assert result.source == b"abcdef" and result.sites == []
    assert [site.note for site in result.skipped] == ["b: anchor overlaps the anchor of a"]


def test_a_replacement_is_never_searched_again():
    # The replacement contains the anchor: matching in the original text only keeps this finite and exact.
    result = anchored_text.apply(b"x = 1\n", {"edits": [edit("x = 1", "x = 1  # was: x = 1")]})
    assert result.source == b"x = 1  # was: x = 1\n"
    assert len(result.sites) == 1


def test_occurrences_do_not_overlap_themselves():
    assert anchored_text.occurrences("aaaa", "aa") == [0, 2]


@pytest.mark.parametrize("bad, message", [
    ({"edits": []}, "at least one"),
    ({"edits": [{"anchor": "", "replacement": "x"}]}, "anchor"),
    ({"edits": [{"anchor": "a", "replacement": 3}]}, "replacement"),
    ({"edits": [{"anchor": "a", "replacement": "b", "count": 0}]}, "count"),
    ({"edits": [{"anchor": "a", "replacement": "b", "cout": 2}]}, "unknown key"),
])
def test_malformed_edits_are_a_patch_file_bug(bad, message):
    with pytest.raises(ValueError, match=message):
        anchored_text.apply(b"a", bad)


def write_patch(folder, files_toml):
    path = folder / "p.toml"
    path.write_text('id = "p"\ntitle = "t"\nwhy = "w"\ntransform = "anchored-text"\n' + files_toml)
    return path


def test_expected_sites_is_the_sum_of_the_counts(tmp_path):
    patch = catalog.load(write_patch(tmp_path, """
[[files]]
path = "a.c"
[[files.edits]]
anchor = "x"
replacement = "y"
count = 2
[[files.edits]]
anchor = "z"
replacement = "w"
"""))
    (spec,) = patch.files
    assert spec.expected_sites == 3
    assert [entry["anchor"] for entry in patch.options_for("a.c")["edits"]] == ["x", "z"]


def test_an_expected_sites_that_disagrees_with_the_counts_is_rejected(tmp_path):
    path = write_patch(tmp_path, """
[[files]]
path = "a.c"
expected_sites = 2
[[files.edits]]
anchor = "x"
replacement = "y"
""")
    with pytest.raises(ValueError, match="add up to 1"):
        catalog.load(path)


def test_the_shipped_compat_patch_is_well_formed():
    (patch,) = [patch for patch in catalog.load_all() if patch.id == "cudnn-compat"]
    assert patch.group == "compat" and patch.transform == "anchored-text"
    assert {spec.path: spec.expected_sites for spec in patch.files} == {
        "gpuarray/c_code/dnn_conv_base.c": 2,
        "gpuarray/c_code/dnn_fwd.c": 1,
        "gpuarray/c_code/dnn_gw.c": 5,
        "gpuarray/c_code/dnn_gi.c": 6,
        "gpuarray/dnn.py": 6,
    }
    for spec in patch.files:  # every edit has a name for reports, and the names are unique
        names = [entry["name"] for entry in spec.options["edits"]]
        assert len(set(names)) == len(names)
