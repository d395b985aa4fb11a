"""Numeric precision: when bfloat16 autocast is used, decided in one place.

    use_bf16("auto", torch.device("cpu"))  -> True on a CPU with native bf16 instructions

bf16 autocast roughly doubles training speed on CPUs with native bfloat16 instructions
(AVX512-BF16 or AMX) and on Ampere-or-newer GPUs, and costs speed elsewhere (it is
emulated). "auto" therefore turns it on only where the hardware runs it natively, as
torch itself reports; True/False force it. Weights, optimiser state and checkpoints stay
float32 whatever this says: autocast only changes the dtype of matmul/conv compute.
"""

from __future__ import annotations

import torch

BF16_SETTINGS = ("auto", True, False)


def bf16_native(device: torch.device | str) -> bool:
    """Whether `device` runs bfloat16 matmul/conv natively (not emulated)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        caps = torch.cpu.get_capabilities()  # what torch's own CPU dispatch detected
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    return False


def use_bf16(setting: bool | str, device: torch.device | str) -> bool:
    """Resolve a `bf16` setting ("auto", true or false) for `device`."""
    if setting == "auto":
        return bf16_native(device)
    if isinstance(setting, bool):
        return setting
    raise ValueError(f"bf16 must be \"auto\", true or false, got {setting!r}")


def resolve_device(name: str | None = None) -> torch.device:
    """``None`` or "auto": the GPU when there is one, else the CPU; otherwise as named
    ("cpu", "cuda", "cuda:N"). A CUDA device where CUDA is not available is a ValueError."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return dev
