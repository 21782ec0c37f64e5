import pytest
import torch

from pipelines import device
from pipelines.errors import UserError


def test_try_gpu_falls_back_to_cpu_without_cuda():
    assert not torch.cuda.is_available()
    assert device.try_gpu() == torch.device("cpu")
    assert device.try_gpu(3) == torch.device("cpu")


def test_try_all_gpus_is_cpu_list_without_cuda():
    assert device.try_all_gpus() == [torch.device("cpu")]


def test_resolve_auto_and_cpu():
    assert device.resolve("auto") == torch.device("cpu")
    assert device.resolve("CPU") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu", "cuda:0:1"])
def test_resolve_rejects_bad_strings(spec):
    with pytest.raises(UserError, match="--device"):
        device.resolve(spec)


def test_resolve_missing_cuda_device_is_a_user_error():
    with pytest.raises(UserError, match="CUDA device"):
        device.resolve("cuda:1")


def test_try_gpu_uses_cuda_when_present(monkeypatch):
    monkeypatch.setattr(device, "num_gpus", lambda: 2)
    assert device.try_gpu(1) == torch.device("cuda:1")
    assert device.try_gpu(2) == torch.device("cpu")
    assert device.try_all_gpus() == [torch.device("cuda:0"), torch.device("cuda:1")]
    assert device.resolve("auto") == torch.device("cuda:0")
