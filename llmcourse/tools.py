"""Tool calling: describe Python functions to a model, parse the call it writes, run it, feed back the result.

A chat model cannot compute 1234 * 5678 reliably, but it can *ask* for it. Tool calling is a text
protocol on top of the chat template:

  1. the tools' names, descriptions and JSON-schema parameters go into the prompt (rendered by the
     tokenizer's chat template when it knows about tools, else by us into the system turn: that
     is `llmcourse.tool_prompt`);
  2. the model answers with a call instead of prose, e.g.
     `<tool_call>[{"name": "calculator", "arguments": {"expression": "1234 * 5678"}}]</tool_call>`
     (the format SmolLM2-Instruct was fine-tuned on, from Argilla's Synth-APIGen data);
  3. we parse and validate it, run the Python function, and append the result as a `tool` message;
  4. the model reads the result and writes the final answer.

The OpenAI chat API carries the same information as JSON: `tools=[{"type": "function", "function":
{...}}]` in the request and `message.tool_calls=[{"id", "type": "function", "function": {"name",
"arguments": "<JSON string>"}}]` in the reply; `to_openai_tool_calls` / `from_openai_tool_calls`
convert, so the course server can reuse this module. This module is the protocol: the `Tool` and
`ToolCall` records, the call text (`format_tool_calls` / `parse_tool_calls`), validation and
execution (`ToolRegistry`), and the OpenAI shapes.

`calculator` is the example tool: `llmcourse.tasks.calculator.calculate`, which evaluates arithmetic by
walking Python's syntax tree (never `eval`) and rejects names, attributes, calls, subscripts and
exponents that would take minutes with `CalculatorError` (re-exported here).

References: OpenAI's function-calling guide (request/response shapes); JSON Schema (parameters);
Patil et al. 2023 (Gorilla) and Schick et al. 2023 (Toolformer) for why models learn to call tools.
Left out: parallel execution, streaming of partial calls, full JSON-Schema validation (we check
required keys, unknown keys and the basic types), and sandboxing of arbitrary user tools.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmcourse.tasks.calculator import CalculatorError, calculate  # noqa: F401  (CalculatorError re-exported)


class ToolCallError(ValueError):
    """A tool call that cannot be parsed, validated or executed; the message says why."""


@dataclass(frozen=True)
class Tool:
    name: str  # what the model writes in "name"
    description: str  # one sentence the model reads to decide when to call it
    # JSON schema of the arguments: {"type": "object", "properties": {...}, "required": [...]}
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})
    # the Python function, called with the arguments as keywords
    fn: Callable[..., Any] | None = field(default=None, compare=False)

    def spec(self) -> dict:
        """The function description alone: {"name", "description", "parameters"}."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def to_openai(self) -> dict:
        """The OpenAI request shape: {"type": "function", "function": spec}."""
        return {"type": "function", "function": self.spec()}

    @classmethod
    def from_openai(cls, spec: dict, fn: Callable[..., Any] | None = None) -> Tool:
        """Inverse of `to_openai` (also accepts the bare function spec)."""
        f = spec.get("function", spec) if isinstance(spec, dict) else None
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"]:
            raise ToolCallError(f"a tool needs a non-empty string 'name', got {spec!r}")
        params = f.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise ToolCallError(f"tool {f['name']!r}: 'parameters' must be a JSON-schema object")
        return cls(f["name"], f.get("description", ""), params, fn)


@dataclass(frozen=True)
class ToolCall:
    name: str  # the tool to run
    arguments: dict  # keyword arguments, already decoded from JSON
    id: str = ""  # OpenAI's tool_call_id; links the result message to its call


# ------------------------------------------------------------------ the text of a call

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"


def format_tool_calls(calls: Sequence[ToolCall]) -> str:
    """Calls as the text the model writes: <tool_call>[{"name": ..., "arguments": {...}}]</tool_call>."""
    body = json.dumps(
        [{"name": c.name, "arguments": c.arguments} for c in calls], ensure_ascii=False
    )
    return f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}"


# ------------------------------------------------------------------ parsing the model's call

_BLOCK = re.compile(
    re.escape(TOOL_CALL_OPEN) + r"(.*?)(?:" + re.escape(TOOL_CALL_CLOSE) + r"|$)", re.DOTALL
)


def _close_open(text: str) -> str:
    """Close a string and brackets left open at the end (generation stopped mid-call)."""
    stack, in_string, escaped = [], False, False
    for ch in text:
        if in_string:
            escaped = ch == "\\" and not escaped
            if ch == '"' and not escaped:
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append("]" if ch == "[" else "}")
        elif ch in "]}" and stack:
            stack.pop()
    return text + ('"' if in_string else "") + "".join(reversed(stack))


def _repairs(payload: str) -> list[str]:
    """Small models' usual slips, mended: a closing quote forgotten before the final brackets
    ('{"expression": "2+2}}]' -> '{"expression": "2+2"}}]'), and brackets never closed."""
    tail = re.search(r"[\]\}\s]*$", payload).group(0)
    return [payload[: len(payload) - len(tail)] + '"' + tail, _close_open(payload)]


def _decode(payload: str) -> Any:
    """JSON; else a Python literal (small models like single quotes); else JSON after small repairs."""
    payload = payload.strip()
    if payload.startswith("```"):  # a fenced block: ```json ... ```
        payload = payload.strip("`").removeprefix("json").strip()
    try:
        return json.loads(payload)
    except json.JSONDecodeError as e:
        error = e
    try:
        return ast.literal_eval(payload)  # literals only: never runs code
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    for candidate in _repairs(payload):
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    raise ToolCallError(
        f"tool call is not valid JSON ({error.msg} at position {error.pos}): {payload[:120]!r}"
    )


def _as_calls(obj: Any, where: str) -> list[ToolCall]:
    items = obj if isinstance(obj, list) else [obj]
    calls = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ToolCallError(
                f"{where}: call {i} must be an object with 'name' and 'arguments', got {item!r}"
            )
        if "function" in item and isinstance(
            item["function"], dict
        ):  # OpenAI shape written by the model
            item = item["function"]
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ToolCallError(f"{where}: call {i} has no 'name' (keys: {sorted(item)})")
        args = item.get("arguments", item.get("parameters", {}))
        if isinstance(args, str):  # OpenAI sends arguments as a JSON string
            args = _decode(args) if args.strip() else {}
        if not isinstance(args, dict):
            raise ToolCallError(
                f"{where}: 'arguments' of {name!r} must be an object, got {type(args).__name__}"
            )
        calls.append(ToolCall(name, args, str(item.get("id", ""))))
    return calls


def _find_json_values(text: str):
    """Every JSON object or list that starts somewhere in `text` (scanned left to right)."""
    decoder = json.JSONDecoder()
    i = 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = decoder.raw_decode(text, i)
                yield value
                i = end
                continue
            except json.JSONDecodeError:
                pass
        i += 1


def parse_tool_calls(text: str) -> list[ToolCall]:
    """The tool calls in a model's reply; [] when it is a plain answer.

    1. `<tool_call>...</tool_call>` blocks (an unclosed last block is read to the end of the text),
       each holding one call object or a list of them. Python-style quotes, a closing quote
       forgotten before the final brackets and brackets left open are mended; anything else
       malformed raises ToolCallError.
    2. Fallback without tags: the first JSON object (or list of objects) in the text that has a
       "name" and "arguments" key, e.g. inside a ```json fence.

    >>> parse_tool_calls('<tool_call>[{"name": "calculator", "arguments": {"expression": "2+2"}}]</tool_call>')
    [ToolCall(name='calculator', arguments={'expression': '2+2'}, id='')]
    """
    blocks = _BLOCK.findall(text)
    if blocks:
        calls = []
        for n, block in enumerate(blocks):
            if not block.strip():
                raise ToolCallError(f"<tool_call> block {n} is empty")
            calls += _as_calls(_decode(block), f"<tool_call> block {n}")
        return calls
    for value in _find_json_values(text):
        items = value if isinstance(value, list) else [value]
        if items and all(
            isinstance(v, dict) and "name" in v and ("arguments" in v or "parameters" in v)
            for v in items
        ):
            return _as_calls(value, "JSON in the reply")
    return []


def split_reply(text: str) -> tuple[str, list[ToolCall]]:
    """(the reply's prose with the <tool_call> blocks removed, the calls) — for a server's message."""
    calls = parse_tool_calls(text)
    content = _BLOCK.sub("", text).strip() if TOOL_CALL_OPEN in text else ("" if calls else text)
    return content, calls


# ------------------------------------------------------------------ validating and executing

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def validate_arguments(tool: Tool, arguments: dict) -> None:
    """Check the arguments against the tool's schema: required keys, unknown keys, basic types, enums."""
    schema = tool.parameters or {}
    props = schema.get("properties", {})
    missing = [k for k in schema.get("required", []) if k not in arguments]
    if missing:
        raise ToolCallError(
            f"{tool.name}: missing required argument(s) {missing}; expected {sorted(props)}"
        )
    unknown = sorted(set(arguments) - set(props))
    if unknown and (props or schema.get("additionalProperties", True) is False):
        raise ToolCallError(f"{tool.name}: unknown argument(s) {unknown}; expected {sorted(props)}")
    for key, value in arguments.items():
        spec = props.get(key, {})
        kind = spec.get("type")
        kinds = kind if isinstance(kind, list) else [kind] if kind else []
        ok = not kinds or any(
            isinstance(value, _JSON_TYPES.get(k, object))
            and not (k in ("integer", "number") and isinstance(value, bool))
            for k in kinds
        )
        if not ok:
            raise ToolCallError(
                f"{tool.name}: argument {key!r} should be {kind}, got {type(value).__name__} {value!r}"
            )
        if "enum" in spec and value not in spec["enum"]:
            raise ToolCallError(
                f"{tool.name}: argument {key!r} must be one of {spec['enum']}, got {value!r}"
            )


class ToolRegistry:
    """Tools by name, with their Python functions; `execute(call)` validates and runs one call."""

    def __init__(self, tools: Sequence[Tool] = ()):
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, tool: Tool) -> Tool:
        if tool.fn is None:
            raise ValueError(f"tool {tool.name!r} has no Python function (fn) to execute")
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        return tool

    @property
    def tools(self) -> list[Tool]:
        return list(self._tools.values())

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def execute(self, call: ToolCall) -> str:
        """Run the call; the result as the text of a `tool` message (JSON unless it is a string).

        Unknown tools and invalid arguments raise ToolCallError. An exception inside the tool is
        turned into ToolCallError too, so a caller can send its message back to the model.
        """
        if call.name not in self._tools:
            raise ToolCallError(f"unknown tool {call.name!r}; available: {sorted(self._tools)}")
        tool = self._tools[call.name]
        validate_arguments(tool, call.arguments)
        try:
            result = tool.fn(**call.arguments)
        except ToolCallError:
            raise
        except Exception as e:
            raise ToolCallError(f"{tool.name} failed: {type(e).__name__}: {e}") from e
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


# ------------------------------------------------------------------ the OpenAI JSON shape


def to_openai_tool_calls(calls: Sequence[ToolCall]) -> list[dict]:
    """[{"id", "type": "function", "function": {"name", "arguments": JSON string}}]; missing ids made up."""
    return [
        {
            "id": c.id or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
        }
        for c in calls
    ]


def from_openai_tool_calls(tool_calls: Sequence[dict]) -> list[ToolCall]:
    """Inverse of `to_openai_tool_calls`: decodes each arguments string; errors say which call."""
    if not isinstance(tool_calls, (list, tuple)):
        raise ToolCallError(f"tool_calls must be a list, got {type(tool_calls).__name__}")
    out = []
    for i, tc in enumerate(tool_calls):
        if not isinstance(tc, dict) or not isinstance(tc.get("function"), dict):
            raise ToolCallError(f"tool_calls[{i}] needs a 'function' object, got {tc!r}")
        call = _as_calls(tc["function"], f"tool_calls[{i}]")[0]
        out.append(ToolCall(call.name, call.arguments, str(tc.get("id", ""))))
    return out


def assistant_message(calls: Sequence[ToolCall], content: str | None = None) -> dict:
    """The assistant turn that requests the calls, in OpenAI's shape."""
    return {"role": "assistant", "content": content, "tool_calls": to_openai_tool_calls(calls)}


def tool_message(call: ToolCall, result: str) -> dict:
    """The turn that carries a tool's result back to the model (OpenAI: role "tool" + tool_call_id)."""
    return {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result}


# ------------------------------------------------------------------ the example tool

calculator = Tool(
    "calculator",
    "Evaluate an arithmetic expression (numbers, + - * / // % ** and parentheses) and return the number.",
    {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "for example 1234 * 5678"}},
        "required": ["expression"],
    },
    calculate,
)
