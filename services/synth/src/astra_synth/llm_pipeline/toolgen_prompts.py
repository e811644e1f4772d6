"""Stage B3 prompts and reply shapes: schema -> enrichment -> concrete call -> Python code."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from astra_proto.tools import TOOL_NAME_PATTERN
from astra_synth.llm_pipeline.ask import StageReply

SYSTEM_SCHEMA = """You design one tool (a function an assistant can call) that answers a \
sub-question. It must be general: it takes the entity or values the sub-question is about as \
arguments and returns structured data, of which the sub-answer is one value.
Reply with one JSON object and nothing else:
{"name": "<snake_case verb_noun>", "description": "<what it does, for the assistant>",
 "parameters": {"type": "object", "properties": {"<arg>": {"type": "string",
   "description": "..."}}, "required": ["<arg>"]}}"""
"""System prompt of the schema step; the input is the sub-question, its answer and context."""

SYSTEM_ENRICH = """You extend a tool's schema with optional parameters a real API of this \
kind would have (filters, units, formats, limits), keeping it backward compatible: the same \
name, every existing parameter unchanged, the same required list; new parameters optional.
Reply with the complete new schema as one JSON object and nothing else, in the same shape:
{"name": ..., "description": ..., "parameters": {...}}"""
"""System prompt of the enrichment step; the input is the tool schema and the sub-question."""

SYSTEM_CALL = """You write the concrete call of a tool that answers a sub-question. Take \
argument values only from the question, the sub-question and the answers of the \
sub-questions it depends on (never the sub-answer itself).
Reply with one JSON object and nothing else: {"arguments": {"<arg>": <value>}}"""
"""System prompt of the call step; the input is the tool, the sub-question and its context."""

SYSTEM_CODE = """You implement a tool as one self-contained Python function. Rules: \
Python built-ins only (no imports outside math, re, json, datetime, decimal, fractions, \
statistics, string, itertools, functools, collections, typing, dataclasses, enum); \
no files, network, processes or environment access; the data the tool needs is embedded \
as a literal (mock data with a few other realistic entries besides the one asked about); \
validate arguments and raise ValueError with a helpful message for unknown values; the \
function RETURNS a JSON-serialisable dict in which the sub-answer is one value (printing \
does not count). The given call must return the sub-answer.
Reply with one JSON object and nothing else:
{"entrypoint": "<the function name>", "code": "<the Python source>"}"""
"""System prompt of the code step; the input is the tool, the call and the expected answer."""


class SchemaReply(StageReply):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str = Field(min_length=1, max_length=2000)
    parameters: dict[str, Any]


class CallReply(StageReply):
    arguments: dict[str, Any]


class CodeReply(StageReply):
    entrypoint: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    code: str = Field(min_length=1)
