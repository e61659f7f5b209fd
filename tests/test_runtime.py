"""Runtime decisions: device, precision rule (T4 -> fp16 + scaler), seeding, platform detection."""

import subprocess
import sys

import pytest
import torch

from llmcourse import runtime


@pytest.mark.parametrize(
    "cap,expected",
    [
        ((7, 5), torch.float16),
        ((7, 0), torch.float16),
        ((8, 0), torch.bfloat16),
        ((8, 6), torch.bfloat16),
        ((9, 0), torch.bfloat16),
    ],
)
def test_precision_rule_by_compute_capability(cap, expected):
    assert runtime.pick_dtype(torch.device("cuda"), capability=cap) == expected


def test_cpu_runtime_is_fp32_without_scaler():
    rt = runtime.detect(prefer="cpu")
    assert rt.device.type == "cpu" and rt.dtype == torch.float32
    assert not rt.use_grad_scaler and not rt.amp
    with rt.autocast():
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32
    assert "cpu" in str(rt) and "float32" in str(rt)


def test_fp16_runtime_asks_for_a_scaler():
    rt = runtime.Runtime(
        device=torch.device("cuda"), dtype=torch.float16, platform="colab", device_name="Tesla T4"
    )
    assert rt.use_grad_scaler and rt.amp
    bf = runtime.Runtime(
        device=torch.device("cuda"), dtype=torch.bfloat16, platform="local", device_name="A100"
    )
    assert not bf.use_grad_scaler


def test_precision_override_is_checked():
    with pytest.raises(ValueError, match="fp32"):
        runtime.detect(prefer="cpu", precision="fp16")
    with pytest.raises(ValueError, match="use one of"):
        runtime.detect(prefer="cpu", precision="fp8")
    assert runtime.detect(prefer="cpu", precision="fp32").dtype == torch.float32


def test_seed_all_and_generators_are_reproducible():
    runtime.seed_all(123)
    a = torch.randn(5)
    runtime.seed_all(123)
    assert torch.equal(a, torch.randn(5))
    g1, g2 = runtime.make_generator(7), runtime.make_generator(7)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


def test_platform_detection(monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    expected_local = "kaggle" if runtime.os.path.isdir("/kaggle/working") else "local"
    assert runtime.platform() == expected_local
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert runtime.platform() == "kaggle"
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release")
    assert runtime.platform() == "colab"


def test_importing_the_package_is_light():
    """`import llmcourse` must not import torch (the setup cell should return at once)."""
    code = "import sys, llmcourse; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
