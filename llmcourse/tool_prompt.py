"""Putting tools into a chat prompt: the listing the model reads and the conversation it continues.

`llmcourse.tools` defines the protocol (a `Tool`, the `<tool_call>` text the model writes, parsing,
executing); this module renders it into the text a model sees (step 1 of that protocol):

* when the tokenizer's chat template knows about tools (`template_supports_tools`, checked by
  rendering a probe both ways: many templates, SmolLM2's among them, silently ignore `tools=`),
  `apply_chat_template(tools=...)` writes the listing in the format the model was trained on;
* otherwise `tools_system_prompt` lists the tools as JSON inside <tools></tools> at the end of the
  system turn and shows one example call in SmolLM2's format (`with_tools_listing`);
* earlier assistant turns that called tools (OpenAI's `tool_calls`) become the text the model would
  have written (`to_template_messages`), so a multi-turn conversation renders with any template.

`render_prompt(messages, tools, tokenizer)` does all of it. References: Hugging Face's chat
templates guide ("Tool use"); the SmolLM2-Instruct tool-calling format (Argilla's Synth-APIGen
data); OpenAI's function-calling guide for the message shapes. Left out: per-model prompt formats
other than these two, and tool-choice forcing ("required", a named function).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from llmcourse.tools import Tool, ToolCall, ToolCallError, format_tool_calls, from_openai_tool_calls


def tools_system_prompt(tools: Sequence[Tool]) -> str:
    """The system-turn text we use when the chat template cannot render tools itself.

    It lists the tools as JSON inside <tools></tools> and asks for calls in SmolLM2's format.
    """
    listing = json.dumps([t.spec() for t in tools], ensure_ascii=False)
    # The example call uses a real tool's name and parameters: small models copy a placeholder
    # such as "function_name" literally.
    first = tools[0] if tools else Tool("function_name", "")
    example = ToolCall(first.name, {p: "..." for p in first.parameters.get("properties", {})})
    return (
        "You can call functions to answer the user's question. Call a function when it helps; "
        "otherwise answer directly.\n\n"
        f"Available functions:\n<tools>{listing}</tools>\n\n"
        "To call functions, reply with only the calls, in this format, and nothing else:\n"
        + format_tool_calls([example])
    )


def template_supports_tools(tokenizer) -> bool:
    """True when the tokenizer's chat template renders a `tools=` argument (it changes the text).

    Many templates (SmolLM2's among them) silently ignore `tools`, so we render a probe both ways.
    """
    probe = [{"role": "user", "content": "hi"}]
    fake = Tool("probe_tool_xyz", "probe", {"type": "object", "properties": {}}).to_openai()
    try:
        with_tools = tokenizer.apply_chat_template(
            probe, tools=[fake], tokenize=False, add_generation_prompt=True
        )
        without = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    except Exception:  # a template that chokes on tools= (or on the probe) cannot be relied on
        return False
    return with_tools != without and "probe_tool_xyz" in with_tools


def to_template_messages(messages: Sequence[dict], *, native: bool = False) -> list[dict]:
    """OpenAI-shaped messages -> plain {"role", "content"} dicts a chat template can render.

    An assistant turn with `tool_calls` becomes the text the model would have written (our format),
    or, with `native=True`, HF's convention for templates that support tools (arguments as a dict).
    `tool` turns keep only their content.
    """
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ToolCallError(f"message {i} must be a dict with a 'role', got {m!r}")
        calls = from_openai_tool_calls(m["tool_calls"]) if m.get("tool_calls") else []
        if calls and native:
            out.append(
                {
                    "role": "assistant",
                    "content": m.get("content") or "",
                    "tool_calls": [
                        {"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                        for c in calls
                    ],
                }
            )
        elif calls:
            text = ((m.get("content") or "") + "\n" + format_tool_calls(calls)).strip()
            out.append({"role": "assistant", "content": text})
        else:
            out.append({"role": m["role"], "content": m.get("content") or ""})
    return out


def with_tools_listing(messages: Sequence[dict], tools: Sequence[Tool]) -> list[dict]:
    """Template messages with `tools_system_prompt(tools)` at the end of the system turn (a system
    turn is added first when there is none): for a template that cannot render tools itself."""
    msgs, listing = list(messages), tools_system_prompt(tools)
    if msgs and msgs[0]["role"] == "system":
        return [dict(msgs[0], content=msgs[0]["content"] + "\n\n" + listing)] + msgs[1:]
    return [{"role": "system", "content": listing}] + msgs


def render_prompt(
    messages: Sequence[dict],
    tools: Sequence[Tool],
    tokenizer=None,
    *,
    add_generation_prompt: bool = True,
) -> str:
    """The full prompt text: tools described, conversation rendered, ready for the model to continue.

    With a tokenizer whose template supports tools, `apply_chat_template(tools=...)` does it all.
    Otherwise the tool listing is put first in the system turn (merged with an existing system
    message), and the conversation is rendered by the tokenizer's template, or by the course's own
    template (`llmcourse.chat.render`) when `tokenizer` is None.
    """
    native = tokenizer is not None and bool(tools) and template_supports_tools(tokenizer)
    msgs = to_template_messages(messages, native=native)
    if native:
        return tokenizer.apply_chat_template(
            msgs,
            tools=[t.to_openai() for t in tools],
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )
    if tools:
        msgs = with_tools_listing(msgs, tools)
    if tokenizer is None:
        from llmcourse.chat import render

        return render(msgs, add_generation_prompt=add_generation_prompt)
    return tokenizer.apply_chat_template(
        msgs, tokenize=False, add_generation_prompt=add_generation_prompt
    )
