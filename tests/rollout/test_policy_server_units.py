"""The embedded policy server's settings, without starting vLLM."""

from __future__ import annotations

from pathlib import Path

from astra_rollout.policy_server import PolicyServer, PolicyServerSettings, _parse, cpu_dtype

AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n"
AMX = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n"


def test_bfloat16_only_where_the_processor_computes_in_it() -> None:
    assert cpu_dtype(AVX2_ONLY) == "float32"
    assert cpu_dtype(BF16) == "bfloat16"
    assert cpu_dtype(AMX) == "bfloat16"
    assert cpu_dtype("") == "float32"  # no flags line: no bfloat16 instructions known


def test_the_server_runs_in_the_machines_dtype_unless_told(tmp_path: Path) -> None:
    here = cpu_dtype()
    assert PolicyServerSettings(model_dir=tmp_path).dtype == here
    command = PolicyServer(PolicyServerSettings(model_dir=tmp_path)).command()
    assert command[command.index("--dtype") + 1] == here
    assert _parse(["--model-dir", str(tmp_path)]).dtype == here
    assert _parse(["--model-dir", str(tmp_path), "--dtype", "bfloat16"]).dtype == "bfloat16"


def test_the_kv_cache_holds_a_rollout_batch_of_multi_turn_episodes(tmp_path: Path) -> None:
    settings = _parse(["--model-dir", str(tmp_path)])
    assert settings.kv_cache_gib == 4
    assert PolicyServer(settings).environment()["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert _parse(["--model-dir", str(tmp_path), "--kv-cache-gib", "1"]).kv_cache_gib == 1
