"""The `lowkey` command line: models list/fetch/verify/add and faces, human and JSON output."""

import json

import pytest
import torch

from lowkey.cli import main


def test_models_list_json_has_every_record(capsys):
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert {"sface", "facenet128", "facenet512", "ir152-arcface"} <= names
    assert {r["name"] for r in rows if r["default"]} == {"sface", "facenet128", "facenet512",
                                                         "openface", "faceplugin"}
    assert all(r["source"] in ("ok", "missing", "bad hash", "unpinned") for r in rows)


def test_offline_fetch_of_a_missing_model_fails_with_file_and_hash(tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setenv("LOWKEY_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LOWKEY_OFFLINE", "1")
    assert main(["models", "fetch", "sface"]) == 1
    err = capsys.readouterr().err
    assert "face_recognition_sface_2021dec_int8bq.onnx" in err
    assert "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee" in err
    assert not any(tmp_path.rglob("*.onnx"))


def test_verify_reports_missing_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOWKEY_CACHE_DIR", str(tmp_path))
    assert main(["models", "verify", "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert {r["source"] for r in rows} == {"missing"} and not any(r["ok"] for r in rows)


def test_unknown_model_name_is_a_clear_error(capsys):
    assert main(["models", "fetch", "no-such-model"]) == 1
    assert "known models" in capsys.readouterr().err


def test_models_add_registers_an_evolve_checkpoint(tmp_path, monkeypatch, capsys):
    from lowkey.models.evolve import build_backbone
    from lowkey.models.registry import get_record

    monkeypatch.setenv("LOWKEY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LOWKEY_CONFIG_DIR", str(tmp_path / "config"))
    checkpoint = tmp_path / "Backbone_IR_50_Mine.pth"
    state = {f"module.{k}": v for k, v in build_backbone("ir_50").state_dict().items()}
    torch.save(state, checkpoint)
    assert main(["models", "add", str(checkpoint), "--name", "my-ir50", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["architecture"] == "ir_50" and len(record["sha256"]) == 64
    assert get_record("my-ir50").user_added
    assert main(["models", "verify", "my-ir50", "--json"]) == 0


@pytest.mark.weights
def test_faces_sample_json(capsys):
    assert main(["faces", "--sample", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (photo,) = out["photos"]
    (face,) = photo["faces"]
    assert photo["size"] == [512, 512] and len(face["landmarks"]) == 5
    assert photo["smallest_face_px"] == 20
    # the ensemble and the report judge (lowkey models fetch gets the same)
    assert set(face["embedding_norm"]) == {"sface", "facenet128", "facenet512", "openface",
                                           "faceplugin", "arcface-mbf"}
    assert face["embedding_norm"]["openface"] == pytest.approx(1.0, abs=1e-4)  # unit vectors
    assert all(v > 1 for k, v in face["embedding_norm"].items() if k != "openface")


@pytest.mark.weights
def test_faces_reports_bad_files_and_goes_on(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    assert main(["faces", "--sample", str(bad), "--models", "sface"]) == 1
    out = capsys.readouterr().out
    assert "bad.jpg: ERROR" in out and "sample:astronaut: 512x512" in out


def test_a_folder_gives_its_photos_but_not_outputs_or_hidden_files(tmp_path):
    from lowkey.cli import _expand_inputs

    for name in ["b.JPG", "a.png", "c.jfif", "d.hif", "trip_lowkey_edit.webp",  # taken
                 "a_lowkey.png", "._b.JPG", "notes.txt"]:  # an output, hidden, not a photo
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.jpg").mkdir()
    given = tmp_path / "given_lowkey.txt"  # files named on the command line are taken as given
    names = [p.name for p in _expand_inputs([str(tmp_path), str(given)])]
    assert names == ["a.png", "b.JPG", "c.jfif", "d.hif", "trip_lowkey_edit.webp",
                     "given_lowkey.txt"]


def test_a_batch_under_one_is_refused_before_any_work(tmp_path, capsys):
    photo = tmp_path / "a.png"
    photo.write_bytes(b"not looked at")
    assert main(["protect", str(photo), "-o", str(tmp_path / "out"), "--batch", "0"]) == 2
    assert "--batch must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
