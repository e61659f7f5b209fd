"""Tool calling: parsing (good, bad, malformed), schemas and execution, OpenAI shape, rendering."""

import json

import pytest
from llmcourse import tool_prompt, tools
from llmcourse.tools import Tool, ToolCall, ToolCallError, ToolRegistry, parse_tool_calls

CALL = '<tool_call>[{"name": "calculator", "arguments": {"expression": "1234 * 5678"}}]</tool_call>'


# ------------------------------------------------------------------ parsing


def test_parse_smollm2_format():
    assert parse_tool_calls(CALL) == [ToolCall("calculator", {"expression": "1234 * 5678"})]


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}</tool_call>',  # one object, no list
        'Sure! <tool_call>[{"name": "calculator", "arguments": {"expression": "1+1"}}]</tool_call> done',
        '<tool_call>[{"name": "calculator", "arguments": {"expression": "1+1"}}]',  # unclosed: generation stopped
        "<tool_call>[{'name': 'calculator', 'arguments': {'expression': '1+1'}}]</tool_call>",  # Python quotes
        '<tool_call>{"name": "calculator", "arguments": "{\\"expression\\": \\"1+1\\"}"}</tool_call>',  # args string
        '```json\n{"name": "calculator", "arguments": {"expression": "1+1"}}\n```',  # fallback: no tags
        'I will call {"name": "calculator", "arguments": {"expression": "1+1"}} now',
        '<tool_call>[{"name": "calculator", "arguments": {"expression": "1+1}}]</tool_call>',  # SmolLM2's slip
        '<tool_call>[{"name": "calculator", "arguments": {"expression": "1+1',  # cut off mid-call
    ],
)
def test_parse_tolerates_common_variants(text):
    assert parse_tool_calls(text) == [ToolCall("calculator", {"expression": "1+1"})]


def test_parse_several_calls_in_order():
    text = (
        '<tool_call>[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1}}]</tool_call>'
        '<tool_call>{"name": "c", "arguments": {}}</tool_call>'
    )
    assert [c.name for c in parse_tool_calls(text)] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "text", ["The answer is 42.", "", 'a dict {"x": 1} without a name', "[1, 2, 3]"]
)
def test_plain_answers_have_no_calls(text):
    assert parse_tool_calls(text) == []


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '<tool_call>[{"name": "calculator", "arguments": {"expression": </tool_call>',
            "not valid JSON",
        ),
        ("<tool_call></tool_call>", "empty"),
        ('<tool_call>[{"arguments": {"x": 1}}]</tool_call>', "no 'name'"),
        ('<tool_call>[{"name": "f", "arguments": [1, 2]}]</tool_call>', "must be an object"),
        ('<tool_call>["calculator"]</tool_call>', "must be an object with 'name'"),
    ],
)
def test_malformed_calls_raise_clear_errors(text, message):
    with pytest.raises(ToolCallError, match=message):
        parse_tool_calls(text)


def test_split_reply_separates_prose_and_calls():
    content, calls = tools.split_reply("Let me compute. " + CALL)
    assert content == "Let me compute." and calls[0].name == "calculator"
    assert tools.split_reply("Paris.") == ("Paris.", [])


# ------------------------------------------------------------------ schemas and execution


def _registry():
    def add(a: int, b: int) -> int:
        return a + b

    adder = Tool(
        "add",
        "Add two integers.",
        {
            "type": "object",
            "required": ["a", "b"],
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        },
        add,
    )
    unit = Tool(
        "unit",
        "Pick a unit.",
        {"type": "object", "properties": {"u": {"type": "string", "enum": ["m", "s"]}}},
        lambda u="m": u,
    )
    return ToolRegistry([tools.calculator, adder, unit])


def test_execute_runs_the_python_function():
    reg = _registry()
    assert reg.execute(ToolCall("calculator", {"expression": "6*7"})) == "42"
    assert reg.execute(ToolCall("add", {"a": 2, "b": 3})) == "5"
    assert reg.execute(ToolCall("unit", {"u": "s"})) == "s"  # strings are returned as they are


@pytest.mark.parametrize(
    "call, message",
    [
        (ToolCall("weather", {}), "unknown tool 'weather'"),
        (ToolCall("add", {"a": 1}), "missing required argument"),
        (ToolCall("add", {"a": 1, "b": 2, "c": 3}), "unknown argument"),
        (ToolCall("add", {"a": "1", "b": 2}), "should be integer"),
        (
            ToolCall("add", {"a": True, "b": 2}),
            "should be integer",
        ),  # bool is an int in Python, not in JSON
        (ToolCall("unit", {"u": "kg"}), "must be one of"),
        (ToolCall("calculator", {"expression": "x"}), "calculator failed: CalculatorError"),
    ],
)
def test_execute_errors_name_the_problem(call, message):
    with pytest.raises(ToolCallError, match=message):
        _registry().execute(call)


def test_registry_refuses_duplicates_and_missing_functions():
    with pytest.raises(ValueError, match="already registered"):
        ToolRegistry([tools.calculator, tools.calculator])
    with pytest.raises(ValueError, match="no Python function"):
        ToolRegistry([Tool("x", "no fn")])


# ------------------------------------------------------------------ OpenAI shape


def test_openai_tool_calls_round_trip():
    calls = [
        ToolCall("calculator", {"expression": "2+2"}, "call_1"),
        ToolCall("add", {"a": 1, "b": 2}, "call_2"),
    ]
    shaped = tools.to_openai_tool_calls(calls)
    assert shaped[0] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "calculator", "arguments": '{"expression": "2+2"}'},
    }
    assert isinstance(
        shaped[1]["function"]["arguments"], str
    )  # OpenAI sends arguments as a JSON string
    assert tools.from_openai_tool_calls(json.loads(json.dumps(shaped))) == calls


def test_missing_ids_are_made_up_and_unique():
    shaped = tools.to_openai_tool_calls([ToolCall("a", {}), ToolCall("a", {})])
    assert shaped[0]["id"].startswith("call_") and shaped[0]["id"] != shaped[1]["id"]


def test_tool_spec_round_trip_and_messages():
    spec = tools.calculator.to_openai()
    assert spec["type"] == "function" and spec["function"]["parameters"]["required"] == [
        "expression"
    ]
    assert Tool.from_openai(spec) == tools.calculator  # fn is not compared
    call = ToolCall("calculator", {"expression": "2+2"}, "call_9")
    assert tools.tool_message(call, "4") == {
        "role": "tool",
        "tool_call_id": "call_9",
        "name": "calculator",
        "content": "4",
    }
    assert tools.assistant_message([call])["tool_calls"][0]["id"] == "call_9"
    with pytest.raises(ToolCallError, match="needs a 'function'"):
        tools.from_openai_tool_calls([{"id": "x"}])
    with pytest.raises(ToolCallError, match="non-empty string 'name'"):
        Tool.from_openai({"type": "function", "function": {"description": "no name"}})


# ------------------------------------------------------------------ rendering


def _hf_tokenizer(template: str):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=template)


PLAIN = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
WITH_TOOLS = "{% if tools %}<tools>{{ tools | tojson }}</tools>\n{% endif %}" + PLAIN


def test_template_support_is_detected_by_rendering():
    assert not tool_prompt.template_supports_tools(_hf_tokenizer(PLAIN))
    assert tool_prompt.template_supports_tools(_hf_tokenizer(WITH_TOOLS))


def test_render_puts_tools_in_the_system_turn_when_the_template_ignores_them():
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 6*7?"},
        tools.assistant_message([ToolCall("calculator", {"expression": "6*7"}, "c1")]),
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    text = tool_prompt.render_prompt(msgs, [tools.calculator], _hf_tokenizer(PLAIN))
    assert text.startswith("<system>Be brief.\n\nYou can call functions")
    assert '"name": "calculator"' in text and "<tool>42\n" in text and text.endswith("<assistant>")
    assert (
        '<assistant><tool_call>[{"name": "calculator", "arguments": {"expression": "6*7"}}]</tool_call>'
        in text
    )
    # the course's own template when there is no tokenizer
    assert tool_prompt.render_prompt(msgs[1:2], [tools.calculator]).startswith(
        "<|system|>You can call functions"
    )


def test_render_uses_the_template_when_it_supports_tools():
    text = tool_prompt.render_prompt(
        [{"role": "user", "content": "hi"}], [tools.calculator], _hf_tokenizer(WITH_TOOLS)
    )
    assert text.startswith("<tools>[") and "You can call functions" not in text
