"""The native build is portable: llama.cpp is never compiled for the build machine's CPU.

A GGML_NATIVE build on a Sapphire Rapids VM put AMX tile instructions into libggml-cpu.so; on a VM whose kernel does
not enable AMX state the first decode died with a general protection fault, taking MIKEY (and pytest) with it. The
Makefile builds x86-64 with AVX2/FMA/F16C only; other architectures get llama.cpp's generic build.
"""

from __future__ import annotations

import importlib.util
import platform
import re

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="llama-cpp-python is not installed")


def _features() -> dict[str, int]:
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    return {name: int(value) for name, value in re.findall(r"([A-Z0-9_]+) = (\d+)", info)}


def test_no_instructions_the_user_cpu_or_kernel_may_lack() -> None:
    features = _features()
    assert features, "llama_print_system_info() listed no CPU features"
    risky = {name: on for name, on in features.items() if on and (name.startswith(("AMX", "AVX512", "AVX_VNNI"))
                                                                   or name in ("AVX10", "SVE", "SME"))}
    assert not risky, f"llama.cpp was compiled with {sorted(risky)}: built for the build machine's CPU"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 build flags")
def test_x86_build_keeps_the_portable_vector_baseline() -> None:
    features = _features()
    assert {name for name in ("AVX", "AVX2", "FMA", "F16C") if features.get(name)} == {"AVX", "AVX2", "FMA", "F16C"}
