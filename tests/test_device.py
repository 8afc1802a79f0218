"""lowkey.device: the one rule for picking a torch device."""

import pytest
import torch

from lowkey import pool
from lowkey.device import default_device


def test_a_requested_device_is_taken_as_given():
    assert default_device("cpu") == torch.device("cpu")
    assert default_device(torch.device("cpu")) == torch.device("cpu")
    assert default_device("cuda:1") == torch.device("cuda", 1)  # named, not checked for


@pytest.mark.parametrize("cuda", [False, True])
def test_no_request_means_cuda_when_present_else_cpu(monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    expected = torch.device("cuda" if cuda else "cpu")
    assert default_device() == expected and default_device(None) == expected
    assert default_device("") == expected


def test_the_pool_uses_the_same_rule():
    assert pool.default_device is default_device
    assert pool.ModelPool("cpu").device == torch.device("cpu")
