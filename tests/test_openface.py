"""OpenFace nn4.small2: the port's shapes and output, and the h5 converter's checks."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from lowkey.errors import WeightsError
from lowkey.models.openface import OpenFaceNN4Small2, convert_openface_h5, load_openface


def test_the_port_maps_96_pixel_faces_to_unit_vectors_with_gradients():
    torch.manual_seed(0)
    model = OpenFaceNN4Small2().eval()
    faces = torch.rand(2, 3, 96, 96, requires_grad=True)
    out = model(faces)
    assert out.shape == (2, 128)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    out[:, 0].sum().backward()
    assert faces.grad is not None and (faces.grad != 0).float().mean() > 0.5


def test_an_h5_of_another_network_is_refused(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"conv1"])
        group = f.create_group("conv1")
        group.attrs["weight_names"] = np.array([b"kernel:0"])
        group.create_group("conv1").create_dataset("kernel:0", data=np.zeros((3, 3, 3, 8)))
    with pytest.raises(WeightsError, match="not a Keras-OpenFace"):
        convert_openface_h5(path, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_a_file_that_is_not_h5_is_refused(tmp_path):
    path = tmp_path / "not.h5"
    path.write_bytes(b"nothing here")
    with pytest.raises(WeightsError):
        convert_openface_h5(path, tmp_path / "out.safetensors")
    with pytest.raises(WeightsError):
        load_openface(path)


@pytest.mark.weights
def test_the_real_weights_convert_and_load_exactly(weight_source):
    from lowkey.models.registry import get_record
    from lowkey.models.store import ensure_converted

    source = weight_source("openface")
    model = load_openface(ensure_converted(get_record("openface"), progress=False))
    with h5py.File(source, "r") as f:
        kernel = np.array(f["dense"]["dense"]["kernel:0"])
    assert np.allclose(model.dense.weight.detach().numpy(), kernel.T)
