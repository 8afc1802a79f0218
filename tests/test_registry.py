"""The weight registry itself: schema of every record, names, hashes, the default ensemble."""

import re

import pytest

from lowkey.models import registry
from lowkey.models.registry import BUILTIN, WeightRecord, default_ensemble, get_record

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def test_names_are_unique_and_lookup_works():
    names = [r.name for r in BUILTIN]
    assert len(names) == len(set(names))
    for name in names:
        assert get_record(name).name == name
    with pytest.raises(KeyError, match="known models"):
        get_record("no-such-model")


@pytest.mark.parametrize("record", BUILTIN, ids=lambda r: r.name)
def test_record_schema(record: WeightRecord):
    assert record.sources, "every record needs at least one source"
    for source in record.sources:
        assert source.kind in ("url", "wheel", "file")
        if source.kind == "wheel":
            assert "==" in source.location and source.member, "wheels are pinned, with a member"
        if source.kind == "url":
            assert source.location.startswith("https://")
    if record.sha256 is None:
        # Only records that can only be had by URL may be unpinned (pinned on first download).
        assert all(s.kind == "url" for s in record.sources)
    else:
        assert HEX64.match(record.sha256)
        assert record.size_bytes and record.size_bytes > 1_000_000
    c = record.contract
    assert c.size in (96, 112, 160)
    assert c.colour in ("RGB", "BGR")
    if c.alignment == "template5":
        assert c.template is not None and len(c.template) == 5
        assert all(0 < x < c.size and 0 < y < c.size for x, y in c.template)
    assert record.embedding_dim in (128, 512)
    assert record.licence and record.provenance and record.description


def test_default_ensemble_is_the_offline_models():
    names = {r.name for r in default_ensemble()}
    assert names == {"sface", "facenet128", "facenet512", "openface", "faceplugin"}
    for record in default_ensemble():
        assert record.sha256 is not None
        # offline here = from a package registry: a PyPI wheel or an npm package's tarball
        assert any(s.kind == "wheel" or s.location.startswith("https://registry.npmjs.org/")
                   for s in record.sources), record.name


def test_the_ensemble_and_the_report_judges_never_overlap():
    ensemble = {r.name for r in default_ensemble()}
    judges = {r.name for r in registry.report_judges()}
    assert judges and not ensemble & judges


def test_dlib_is_never_in_the_registry():
    assert not any("dlib" in r.name for r in BUILTIN)


def test_paper_models_are_registered_unpinned():
    paper = [r for r in BUILTIN if r.converter == "evolve_pth"]
    assert {r.name for r in paper} == {"ir152-arcface", "ir152-cosface", "resnet152-arcface",
                                       "resnet152-cosface"}
    assert all(r.sha256 is None for r in paper)


def test_json_round_trip():
    for record in BUILTIN:
        assert WeightRecord.from_json(record.to_json()) == record


def test_user_records_and_pins_live_in_config(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWKEY_CONFIG_DIR", str(tmp_path))
    base = get_record("ir152-arcface")
    registry.pin_sha256(base.name, "ab" * 32)
    assert registry.expected_sha256(base) == "ab" * 32
    with pytest.raises(ValueError, match="built-in"):
        registry.save_user_record(base)
    from dataclasses import replace

    mine = replace(base, name="my-ir152", user_added=True)
    registry.save_user_record(mine)
    assert get_record("my-ir152").architecture == "ir_152"
    assert (tmp_path / "models.json").exists()
