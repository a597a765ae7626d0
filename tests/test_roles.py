"""Special-token roles on real tokenizer files: each family's markers as its chat template places them,
placeholders as `unused`, and the special rule pairing markers across families by role.

Families with no files here (harmony, Phi-4-mini, DeepSeek, Mistral `[INST]`) are real tokenizer.json
files built in tmp_path: o200k plus the family's special tokens, and a tokenizer_config.json with the
family's published chat template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from conftest import demo_file
from tokenizers import AddedToken, Tokenizer

from xtoken_align.roles import KNOWN_FAMILIES, TokenRoles, is_placeholder, known_role, special_roles
from xtoken_align.rules.context import RuleContext
from xtoken_align.rules.strings import ROLE_PRIORITY, special_rule
from xtoken_align.tokenizer_folder import save_tokenizer_folder

# Published chat templates of the families built below, as the families ship them.
PHI4_MINI_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' and 'tools' in message and "
    "message['tools'] is not none %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|tool|>' + "
    "message['tools'] + '<|/tool|>' + '<|end|>' }}{% else %}{{ '<|' + message['role'] + '|>' + "
    "message['content'] + '<|end|>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)
# Mistral-7B-Instruct-v0.1's template (it refuses a system message), on the v0.3 layout where
# [INST] and [/INST] are control tokens.
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
# DeepSeek-R1's template, its tool-call branches left out.
DEEPSEEK_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}"
    "{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{ '<｜User｜>' + message['content'] }}"
    "{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}"
    "{% set content = message['content'] %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}{%- endif %}{%- endfor -%}"
    "{% if add_generation_prompt and not ns.is_tool %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)
# gpt-oss's harmony message framing (its tools, thinking and channel options left out).
HARMONY_TEMPLATE = (
    "{{- '<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\\n"
    "Knowledge cutoff: 2024-06\\nCurrent date: ' + strftime_now('%Y-%m-%d') + '\\n\\nReasoning: medium\\n\\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>' }}"
    "{%- if messages[0].role in ('system', 'developer') %}"
    "{{- '<|start|>developer<|message|># Instructions\\n\\n' + messages[0].content + '\\n\\n<|end|>' }}"
    "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{%- for message in loop_messages %}{%- if message.role == 'user' %}"
    "{{- '<|start|>user<|message|>' + message.content + '<|end|>' }}{%- elif message.role == 'assistant' %}"
    "{%- if loop.last and not add_generation_prompt %}"
    "{{- '<|start|>assistant<|channel|>final<|message|>' + message.content + '<|return|>' }}"
    "{%- else %}{{- '<|start|>assistant<|channel|>final<|message|>' + message.content + '<|end|>' }}"
    "{%- endif %}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start|>assistant' }}{%- endif %}"
)

# Family -> (special tokens, non-special added tokens, tokenizer_config.json), added to o200k.
BUILT = {
    "harmony": (
        ["<|startoftext|>", "<|reserved_200000|>", "<|reserved_200001|>", "<|return|>", "<|constrain|>"]
        + ["<|reserved_200004|>", "<|channel|>", "<|start|>", "<|end|>", "<|message|>", "<|call|>"],
        [],
        {"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "pad_token": "<|endoftext|>"},
        HARMONY_TEMPLATE,
    ),
    "phi4-mini": (
        ["<|assistant|>", "<|end|>", "<|system|>", "<|user|>", "<|tool|>", "<|/tool|>", "<|tool_call|>"],
        [],
        {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
        PHI4_MINI_TEMPLATE,
    ),
    "deepseek": (
        ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜place▁holder▁no▁0｜>"],
        ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"],  # not special in DeepSeek's files either
        {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
        DEEPSEEK_TEMPLATE,
    ),
    "mistral": (
        ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[control_8]"],
        [],
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
        MISTRAL_TEMPLATE,
    ),
}


def _tokenizer_dir(name: str) -> Path:
    """Folder holding a demo's tokenizer.json, wherever the demo resolver keeps it."""
    return demo_file(name).parent


@pytest.fixture(scope="module")
def built_dir(tmp_path_factory: pytest.TempPathFactory):
    """family -> folder with its tokenizer.json and tokenizer_config.json, built once per module."""
    base = _tokenizer_dir("o200k") / "tokenizer.json"
    folders = {}
    for family, (specials, plain, config, template) in BUILT.items():
        tokenizer = Tokenizer.from_file(str(base))
        tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])
        folder = tmp_path_factory.mktemp(family)
        folders[family] = save_tokenizer_folder(folder, tokenizer, {**config, "chat_template": template})
    return folders


@cache
def _read(folder: Path, with_template: bool = True) -> tuple[Tokenizer, dict[int, TokenRoles]]:
    """The tokenizer in a folder and its roles, reading tokenizer_config.json as sources.py does."""
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    roles = {}
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = config.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str):
            roles[key] = value
    template = config.get("chat_template") if with_template else None
    return tokenizer, special_roles(tokenizer, roles, template)


def _by_content(folder: Path, with_template: bool = True) -> dict[str, TokenRoles]:
    tokenizer, roles = _read(folder, with_template)
    added = tokenizer.get_added_tokens_decoder()
    return {added[index].content: found for index, found in roles.items()}


def _folder(name: str, built: dict[str, Path]) -> Path:
    return built[name] if name in built else _tokenizer_dir(name)


# Family -> {marker: roles it must carry (config roles included)}.
EXPECTED = {
    "llama3": {
        "<|begin_of_text|>": ("bos",),
        "<|end_of_text|>": ("eos", "end_of_text"),
        "<|start_header_id|>": ("turn_start",),
        "<|end_header_id|>": ("header_end",),
        "<|eot_id|>": ("turn_end",),
        "<|reserved_special_token_0|>": ("unused",),
    },
    "llama3.1": {"<|start_header_id|>": ("turn_start",), "<|eot_id|>": ("eos", "turn_end")},
    "qwen3": {
        "<|im_start|>": ("turn_start",),
        "<|im_end|>": ("eos", "turn_end"),
        "<|endoftext|>": ("pad", "end_of_text"),
        "<|vision_start|>": ("marker",),
    },
    "gemma3": {
        "<bos>": ("bos",),
        "<eos>": ("end_of_text",),
        "<pad>": ("pad",),
        "<start_of_turn>": ("turn_start",),
        "<end_of_turn>": ("eos", "turn_end"),
        "<unused0>": ("unused",),
        "<start_of_image>": ("marker",),
    },
    "o200k": {"<|endoftext|>": ("bos", "eos", "unk", "end_of_text"), "<|endofprompt|>": ("end_of_prompt",)},
    "cl100k": {"<|endoftext|>": ("bos", "eos", "unk", "end_of_text"), "<|fim_prefix|>": ("fim_prefix",)},
    "llama2": {"<s>": ("bos",), "</s>": ("eos", "end_of_text"), "<unk>": ("unk",)},
    "harmony": {
        "<|startoftext|>": ("bos",),
        "<|start|>": ("turn_start",),
        "<|message|>": ("header_end",),
        "<|end|>": ("turn_end",),
        "<|channel|>": ("channel",),
        "<|return|>": ("eos", "end_of_generation"),
        "<|call|>": ("message_end",),
        "<|reserved_200001|>": ("unused",),
    },
    "phi4-mini": {
        "<|system|>": ("turn_start:system",),
        "<|user|>": ("turn_start:user",),
        "<|assistant|>": ("turn_start:assistant",),
        "<|end|>": ("turn_end",),
        "<|endoftext|>": ("bos", "eos", "pad", "end_of_text"),
        "<|tool|>": ("marker",),
    },
    "deepseek": {
        "<｜begin▁of▁sentence｜>": ("bos",),
        "<｜User｜>": ("turn_start:user",),
        "<｜Assistant｜>": ("turn_start:assistant",),
        "<｜end▁of▁sentence｜>": ("eos", "turn_end"),
        "<｜place▁holder▁no▁0｜>": ("unused",),
    },
    "mistral": {
        "<s>": ("bos",),
        "[INST]": ("turn_start:user",),
        "[/INST]": ("turn_start:assistant",),
        "</s>": ("eos", "turn_end"),
        "[TOOL_CALLS]": ("tool_call",),
        "[control_8]": ("unused",),
    },
}


@pytest.mark.parametrize("name", EXPECTED)
def test_markers_carry_their_familys_roles(name: str, built_dir: dict[str, Path]) -> None:
    found = _by_content(_folder(name, built_dir))
    for content, roles in EXPECTED[name].items():
        assert found[content].roles == roles, content
        assert len(found[content].evidence) == len(roles) and all(found[content].evidence)


@pytest.mark.parametrize(
    ("name", "content", "evidence"),
    [
        ("gemma3", "<start_of_turn>", "chat template: opens each turn, before the role name"),
        ("gemma3", "<end_of_turn>", "chat template: after each message's content"),
        ("gemma3", "<end_of_turn>", "tokenizer_config.json eos_token"),
        ("gemma3", "<unused0>", "placeholder name"),
        ("llama3", "<|end_header_id|>", "chat template: closes the role header, before the content"),
        ("llama3", "<|begin_of_text|>", "chat template: leading token, the bos_token"),
        ("qwen3", "<|im_end|>", "known family ChatML/Qwen agrees"),
        ("o200k", "<|endofprompt|>", "known family GPT tiktoken"),
        ("harmony", "<|channel|>", "known family harmony"),
        ("deepseek", "<｜User｜>", "chat template: opens the user's turn, before its content"),
        ("mistral", "</s>", "known family Mistral, Llama-2 says end_of_text"),  # the template wins
    ],
)
def test_evidence_says_where_a_role_came_from(name: str, content: str, evidence: str, built_dir) -> None:
    assert any(evidence in e for e in _by_content(_folder(name, built_dir))[content].evidence)


def test_without_a_template_the_known_families_decide(built_dir: dict[str, Path]) -> None:
    found = _by_content(built_dir["mistral"], with_template=False)
    assert found["</s>"].roles == ("eos", "end_of_text")
    assert found["[/INST]"].evidence == ("known family Mistral",)


def test_coverage_is_specials_placeholders_and_template_markers() -> None:
    gemma, qwen = _by_content(_tokenizer_dir("gemma3")), _by_content(_tokenizer_dir("qwen3"))
    assert sum(r.roles == ("unused",) for r in gemma.values()) == 6242  # <unusedN>: added, not special
    assert "<mask>" not in gemma and "<think>" not in qwen and "<|fim_prefix|>" not in qwen  # plain added tokens
    llama = _by_content(_tokenizer_dir("llama3"))
    assert sum(r.roles == ("unused",) for r in llama.values()) == 251


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("<unused17>", True),
        ("<|reserved_special_token_250|>", True),
        ("<|extra_204|>", True),
        ("<SPECIAL_42>", True),
        ("[control_768]", True),
        ("<|placeholder3|>", True),
        ("<|dummy_85|>", True),
        ("<|reserved_200011|>", True),
        ("<|endoftext|>", False),
        ("<mask>", False),
        ("<unused>", False),
        ("[INST]", False),
    ],
)
def test_is_placeholder(content: str, expected: bool) -> None:
    assert is_placeholder(content) is expected


def test_known_families_agree_where_they_share_a_marker() -> None:
    roles: dict[str, set[str]] = {}
    for table in KNOWN_FAMILIES.values():
        for content, role in table.items():
            roles.setdefault(content, set()).add(role)
            assert role in ROLE_PRIORITY, role
    assert all(len(found) == 1 for found in roles.values()), {c: r for c, r in roles.items() if len(r) > 1}
    assert known_role("<|end|>") == ("turn_end", "Phi-3/4, harmony")


@dataclass
class _Specials:
    """The one field of a Vocab that special_rule reads."""

    special: dict[int, list[str]]


def _mapped(student: str, teacher: str, built_dir: dict[str, Path]) -> dict[str, str | None]:
    """student special -> the teacher special the special rule maps it to (None for an empty row)."""
    (s_tok, s_roles), (t_tok, t_roles) = _read(_folder(student, built_dir)), _read(_folder(teacher, built_dir))
    specials = [_Specials({i: list(r.roles) for i, r in roles.items()}) for roles in (s_roles, t_roles)]
    entries = special_rule(RuleContext(*specials), sorted(s_roles), None)
    assert set(entries.scores) <= {1.0} and len(set(entries.rows)) == len(entries.rows)  # one-hot
    s_added, t_added = s_tok.get_added_tokens_decoder(), t_tok.get_added_tokens_decoder()
    cols = dict(zip(entries.rows, entries.cols, strict=True))
    return {s_added[i].content: t_added[cols[i]].content if i in cols else None for i in s_roles}


@pytest.mark.parametrize(
    ("student", "teacher", "expected"),
    [
        (
            "gemma3",
            "llama3",
            {
                "<start_of_turn>": "<|start_header_id|>",
                "<end_of_turn>": "<|eot_id|>",
                "<bos>": "<|begin_of_text|>",
                "<eos>": "<|end_of_text|>",
                "<pad>": None,  # Llama-3 has no pad: listed, not invented
                "<unused0>": None,
                "<start_of_image>": None,
            },
        ),
        (
            "llama3",
            "gemma3",
            {
                "<|start_header_id|>": "<start_of_turn>",
                "<|eot_id|>": "<end_of_turn>",
                "<|end_of_text|>": "<eos>",
                "<|end_header_id|>": None,  # Gemma's header has no closing marker
                "<|reserved_special_token_0|>": None,
            },
        ),
        ("gemma3", "qwen3", {"<start_of_turn>": "<|im_start|>", "<end_of_turn>": "<|im_end|>", "<bos>": None}),
        ("qwen3", "gemma3", {"<|im_start|>": "<start_of_turn>", "<|im_end|>": "<end_of_turn>"}),
        ("qwen3", "gemma3", {"<|endoftext|>": "<eos>", "<|vision_start|>": None}),
        ("phi4-mini", "qwen3", {"<|user|>": "<|im_start|>", "<|end|>": "<|im_end|>", "<|tool|>": None}),
        ("qwen3", "phi4-mini", {"<|im_start|>": None, "<|im_end|>": "<|end|>"}),  # whose turn: unknown
        ("deepseek", "phi4-mini", {"<｜User｜>": "<|user|>", "<｜Assistant｜>": "<|assistant|>"}),
        ("mistral", "llama3", {"[INST]": "<|start_header_id|>", "</s>": "<|eot_id|>", "[control_8]": None}),
        (
            "harmony",
            "llama3.1",
            {
                "<|start|>": "<|start_header_id|>",
                "<|message|>": "<|end_header_id|>",
                "<|end|>": "<|eot_id|>",
                "<|return|>": "<|eot_id|>",  # through its config eos
                "<|channel|>": None,
            },
        ),
    ],
)
def test_special_rule_maps_by_role(student: str, teacher: str, expected: dict, built_dir) -> None:
    mapped = _mapped(student, teacher, built_dir)
    assert {content: mapped[content] for content in expected} == expected
