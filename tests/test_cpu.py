"""CPU detection, EDGEPACK_ISA (every level this machine runs, in subprocesses), threads."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import edgepack as ep

HERE = Path(__file__).parent


def run_py(args: list[str], isa: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("EDGEPACK_ISA", None)
    if isa is not None:
        env["EDGEPACK_ISA"] = isa
    # The same edgepack this process imported (installed, or the source tree in a dev loop).
    pkg_root = str(Path(ep.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *args], env=env, cwd=HERE, capture_output=True,
                          text=True, timeout=120)


def test_cpu_info_shape() -> None:
    info = ep.cpu_info()
    assert info["arch"] == platform.machine()
    assert info["isa"] in info["supported_isas"]
    assert info["supported_isas"][0] == "scalar"
    assert set(info["supported_isas"]) <= set(info["isa_ladder"])
    assert info["kernels"]["quant"] in info["available_kernels"]["quant"]
    assert info["available_kernels"]["quant"][0] == "scalar"
    for key in ("avx2", "fma", "avx512f", "avx512bw", "avx512vnni", "avxvnni", "asimd",
                "dotprod", "i8mm"):
        assert isinstance(info["features"][key], bool)
    if platform.machine() in ("x86_64", "AMD64"):
        assert info["isa_ladder"] == ["scalar", "avx2", "avx512vnni"]
        assert info["features"]["avx2"] == ("avx2" in info["supported_isas"])


@pytest.mark.parametrize("isa", ep.cpu_info()["supported_isas"])
def test_every_supported_isa_matches_reference(isa: str) -> None:
    r = run_py([str(HERE / "isa_check.py")], isa)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"ok isa={isa}" in r.stdout


def test_isa_override_lowers_quant_kernels() -> None:
    r = run_py(["-c", "import edgepack as e; print(e.cpu_info()['kernels']['quant'])"], "scalar")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "scalar"


@pytest.mark.parametrize("value", ["bogus", "AVX2 ", "neon" if platform.machine() != "aarch64"
                                   else "avx2"])
def test_bad_isa_is_import_error(value: str) -> None:
    r = run_py(["-c", "import edgepack"], value)
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "EDGEPACK_ISA" in r.stderr, r.stderr


def test_unsupported_level_is_import_error() -> None:
    ladder = ep.cpu_info()["isa_ladder"]
    missing = [i for i in ladder if i not in ep.cpu_info()["supported_isas"]]
    if not missing:
        pytest.skip("this CPU supports every level of its ladder")
    r = run_py(["-c", "import edgepack"], missing[0])
    assert r.returncode != 0 and "EDGEPACK_ISA" in r.stderr


def test_threads_roundtrip() -> None:
    old = ep.get_num_threads()
    try:
        for n in (1, 2, 3):
            ep.set_num_threads(n)
            assert ep.get_num_threads() == n
            assert ep.cpu_info()["num_threads"] == n
    finally:
        ep.set_num_threads(old)


@pytest.mark.parametrize("bad", [0, -1])
def test_threads_value_error(bad: int) -> None:
    with pytest.raises(ValueError, match="num_threads"):
        ep.set_num_threads(bad)


@pytest.mark.parametrize("bad", [1.5, "2", True, None])
def test_threads_type_error(bad: object) -> None:
    with pytest.raises(TypeError):
        ep.set_num_threads(bad)  # type: ignore[arg-type]


def test_cli_info() -> None:
    r = run_py(["-m", "edgepack.cli", "info"], None)
    assert r.returncode == 0, r.stderr
    assert '"isa"' in r.stdout
