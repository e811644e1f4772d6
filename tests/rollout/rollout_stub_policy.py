"""A scripted OpenAI-compatible chat-completions server for rollout tests and the benchmark.

The request's ``model`` names the script. Replies carry vLLM-style ``prompt_token_ids``,
``choices[0].token_ids`` and ``logprobs`` from a byte-level "tokenizer" over a fixed
rendering of the messages, so a conversation whose messages are sent back unchanged has
prompts that extend each other (as a real chat template would), and ``mismatch`` breaks that.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse


def render(message: dict[str, Any]) -> str:
    """The stub's chat template for one message."""
    calls = "".join(
        f"<call>{c['function']['name']}{c['function']['arguments']}</call>"
        for c in message.get("tool_calls") or []
    )
    return f"<{message['role']}>{message.get('content') or ''}{calls}</{message['role']}>"


def tokenize(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def tool_call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def last_tool_json(messages: list[dict[str, Any]]) -> dict[str, Any]:
    for message in reversed(messages):
        if message["role"] == "tool":
            try:
                value = json.loads(message["content"])
            except ValueError:  # an error result ("Error: ...")
                return {}
            return value if isinstance(value, dict) else {}
    return {}


class ScriptedPolicy:
    """Replies chosen by the request's ``model`` and how many assistant turns came before."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures: Counter[str] = Counter()

    def reply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.requests.append(body)
        messages: list[dict[str, Any]] = body["messages"]
        turn = sum(m["role"] == "assistant" for m in messages)
        script: str = body["model"]
        if script == "broken":
            return 500, {"error": "the policy is down"}
        if script == "flaky":
            key = f"{messages[-1].get('content')}:{turn}:{len(messages)}"
            self.failures[key] += 1
            if self.failures[key] <= 2:
                return 503, {"error": "busy, try again"}
            script = "solver"
        if script == "bad_request":
            return 400, {"error": "unknown field"}
        message = getattr(self, f"_{script}")(messages, turn)
        return 200, self._response(body, messages, message)

    def _solver(self, messages: list[dict[str, Any]], turn: int) -> dict[str, Any]:
        if turn == 0:
            calls = [tool_call(f"c{turn}", "get_city_id", {"name": "Paris"})]
            return {"role": "assistant", "content": None, "tool_calls": calls}
        if turn == 1:
            city = last_tool_json(messages).get("city_id", "unknown")
            calls = [tool_call(f"c{turn}", "get_forecast", {"city_id": city})]
            return {"role": "assistant", "content": None, "tool_calls": calls}
        return {"role": "assistant", "content": "It will be 21 degrees."}

    _mismatch = _solver

    def _parallel(self, messages: list[dict[str, Any]], turn: int) -> dict[str, Any]:
        if turn == 0:
            calls = [
                tool_call("p1", "get_city_id", {"name": "Paris"}),
                tool_call("p2", "get_city_id", {"name": "Lyon"}),
            ]
            return {"role": "assistant", "content": None, "tool_calls": calls}
        return {"role": "assistant", "content": "c-75 and c-69"}

    def _raw_text(self, messages: list[dict[str, Any]], turn: int) -> dict[str, Any]:
        if turn == 0:
            call = '{"name": "get_city_id", "arguments": {"name": "Paris"}}'
            text = f"Let me look.\n<tool_call>\n{call}\n</tool_call>"
            return {"role": "assistant", "content": text}
        if turn == 1:
            city = last_tool_json(messages).get("city_id", "unknown")
            text = f'<tool_call>{{"name": "get_forecast", "arguments": {{"city_id": "{city}"}}}}'
            return {"role": "assistant", "content": text}
        return {"role": "assistant", "content": "21"}

    def _malformed(self, messages: list[dict[str, Any]], turn: int) -> dict[str, Any]:
        if turn == 0:
            return {"role": "assistant", "content": "<tool_call>{not json</tool_call>"}
        if turn == 1:
            bad = {
                "id": "m1",
                "type": "function",
                "function": {"name": "get_city_id", "arguments": '{"name": '},
            }
            return {"role": "assistant", "content": None, "tool_calls": [bad]}
        return {"role": "assistant", "content": "I give up."}

    def _endless(self, messages: list[dict[str, Any]], turn: int) -> dict[str, Any]:
        calls = [tool_call(f"e{turn}", "get_city_id", {"name": "Paris"})]
        return {"role": "assistant", "content": None, "tool_calls": calls}

    def _answer(self, messages: list[dict[str, Any]], turn: int) -> dict[str, Any]:
        return {"role": "assistant", "content": f"answer {turn}"}

    def _response(
        self, body: dict[str, Any], messages: list[dict[str, Any]], message: dict[str, Any]
    ) -> dict[str, Any]:
        shown = messages
        if body["model"] == "mismatch":  # a template that re-renders earlier turns differently
            shown = [
                {**m, "content": (m.get("content") or "") + " "} if m["role"] == "assistant" else m
                for m in messages
            ]
        prompt = tokenize("".join(render(m) for m in shown))
        completion = tokenize(render(message))
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
        }
        response: dict[str, Any] = {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [choice],
            "usage": {
                "prompt_tokens": len(prompt),
                "completion_tokens": len(completion),
                "total_tokens": len(prompt) + len(completion),
            },
        }
        if body.get("return_token_ids") and body["model"] != "raw_text":
            response["prompt_token_ids"] = prompt
            choice["token_ids"] = completion
            choice["logprobs"] = {
                "content": [{"token": str(t), "logprob": -0.5, "bytes": None} for t in completion]
            }
        return response


def stub_app(policy: ScriptedPolicy) -> FastAPI:
    """The OpenAI-compatible app serving ``policy``."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(body: dict[str, Any]) -> JSONResponse:
        status, payload = policy.reply(body)
        return JSONResponse(payload, status_code=status)

    return app
