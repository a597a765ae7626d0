"""Special tokens by role: what each marker of a tokenizer *is*, with the evidence for it.

`special_roles` gives every special added token (and every placeholder, special or not) a tuple of
roles, each with where it came from. Evidence is read in this order:

1. `tokenizer_config.json`'s `bos_token`/`eos_token`/`pad_token`/`unk_token`: what the config *uses*
   a token for (`bos`, `eos`, `pad`, `unk`).
2. The chat template, rendered on a probe conversation (system, user, assistant, user, then the
   generation prompt; without the system message if the template refuses one). A marker right
   before a role name opens the turn (`turn_start`); one between the role header and the content
   closes the header (`header_end`); one right before a content with no role name in between is a
   role-specific opener (`turn_start:user`, `turn_start:assistant`, `turn_start:system`); one right
   after a content closes the turn (`turn_end`); the leading token is `bos` when it is the config's
   bos. Each marker takes the position most of its occurrences show.
3. `KNOWN_FAMILIES`, a small declared table (Llama-3, Llama-4, ChatML/Qwen, Gemma, Mistral, Phi-3/4, DeepSeek,
   harmony, GPT tiktoken, Llama-2): for markers the template does not place, or when there is no
   template. When template and table disagree the template wins, since it is how the model was
   trained; the table's claim stays in the evidence ("...; known family Mistral says end_of_text").
4. Placeholder names (`<unusedN>`, `<|reserved_special_token_N|>`, `<|extra_N|>`, `<SPECIAL_N>`,
   `[control_N]`, ...): `unused`, never mapped.

A special token with no role from any of these is a `marker`: listed as unmapped by the special rule,
never guessed at by string similarity. Non-special added tokens are covered only as placeholders or
when the chat template places them (DeepSeek's `<｜User｜>` is not flagged special).

Decisions on markers with no exact counterpart elsewhere:
- Mistral `[INST]` is `turn_start:user` (it opens the user turn, no role name follows) and `[/INST]`
  is `turn_start:assistant`: it is the last token before the assistant speaks, where the generation
  prompt ends. Against a teacher with only a generic opener both map to its `turn_start`.
- harmony `<|start|>` is `turn_start`, `<|message|>` `header_end` and `<|end|>` `turn_end`, as the
  template shows. `<|call|>` ends a message that hands over to a tool: `message_end`, as Llama-3.1's
  `<|eom_id|>`. `<|return|>` ends the final answer and generation; only training data ends with it,
  so it is `end_of_generation`, a harmony-only role, and maps elsewhere through its config `eos`.
  `<|channel|>` and `<|constrain|>` sit inside the header and exist only in harmony (`channel`,
  `constrain`): they map harmony to harmony and nowhere else.

Left out: multimodal markers (`<start_of_image>`, `<|vision_start|>`) have no role yet (`marker`),
and tool-call markers are placed by the table only (the probe conversation has no tools).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from tokenizers import AddedToken, Tokenizer

CONFIG_KEYS = {"bos_token": "bos", "eos_token": "eos", "pad_token": "pad", "unk_token": "unk"}

# Family -> marker content -> role. Where families share a marker they agree on its role.
KNOWN_FAMILIES: dict[str, dict[str, str]] = {
    "Llama-3": {
        "<|begin_of_text|>": "bos",
        "<|end_of_text|>": "end_of_text",
        "<|start_header_id|>": "turn_start",
        "<|end_header_id|>": "header_end",
        "<|eot_id|>": "turn_end",
        "<|eom_id|>": "message_end",
        "<|python_tag|>": "tool_call",
        "<|finetune_right_pad_id|>": "pad",
    },
    "Llama-4": {
        "<|header_start|>": "turn_start",
        "<|header_end|>": "header_end",
        "<|eot|>": "turn_end",
        "<|eom|>": "message_end",
        "<|python_start|>": "tool_call",
        "<|finetune_right_pad|>": "pad",
    },
    "ChatML/Qwen": {
        "<|im_start|>": "turn_start",
        "<|im_sep|>": "header_end",
        "<|im_end|>": "turn_end",
        "<|endoftext|>": "end_of_text",
        "<|fim_prefix|>": "fim_prefix",
        "<|fim_middle|>": "fim_middle",
        "<|fim_suffix|>": "fim_suffix",
        "<|fim_pad|>": "fim_pad",
    },
    "Gemma": {
        "<bos>": "bos",
        "<eos>": "end_of_text",
        "<pad>": "pad",
        "<unk>": "unk",
        "<start_of_turn>": "turn_start",
        "<end_of_turn>": "turn_end",
    },
    "Mistral": {
        "<s>": "bos",
        "</s>": "end_of_text",
        "<unk>": "unk",
        "[INST]": "turn_start:user",
        "[/INST]": "turn_start:assistant",
        "[SYSTEM_PROMPT]": "turn_start:system",
        "[TOOL_CALLS]": "tool_call",
    },
    "Phi-3/4": {
        "<|system|>": "turn_start:system",
        "<|user|>": "turn_start:user",
        "<|assistant|>": "turn_start:assistant",
        "<|end|>": "turn_end",
        "<|endoftext|>": "end_of_text",
        "<|tool_call|>": "tool_call",
    },
    "DeepSeek": {
        "<｜begin▁of▁sentence｜>": "bos",
        "<｜end▁of▁sentence｜>": "end_of_text",
        "<｜▁pad▁｜>": "pad",
        "<｜System｜>": "turn_start:system",
        "<｜User｜>": "turn_start:user",
        "<｜Assistant｜>": "turn_start:assistant",
        "<｜tool▁calls▁begin｜>": "tool_call",
        "<｜fim▁begin｜>": "fim_prefix",
        "<｜fim▁hole｜>": "fim_suffix",
        "<｜fim▁end｜>": "fim_middle",
    },
    "harmony": {
        "<|startoftext|>": "bos",
        "<|endoftext|>": "end_of_text",
        "<|start|>": "turn_start",
        "<|channel|>": "channel",
        "<|constrain|>": "constrain",
        "<|message|>": "header_end",
        "<|end|>": "turn_end",
        "<|call|>": "message_end",
        "<|return|>": "end_of_generation",
    },
    "GPT tiktoken": {
        "<|endoftext|>": "end_of_text",
        "<|endofprompt|>": "end_of_prompt",
        "<|fim_prefix|>": "fim_prefix",
        "<|fim_middle|>": "fim_middle",
        "<|fim_suffix|>": "fim_suffix",
    },
    "Llama-2": {"<s>": "bos", "</s>": "end_of_text", "<unk>": "unk"},
}

_PLACEHOLDER = re.compile(
    r"<unused\d+>"  # Gemma (added, but not special)
    r"|<\|reserved_special_token_\d+\|>"  # Llama-3
    r"|<\|reserved_\d+\|>"  # harmony
    r"|<\|extra_\d+\|>"  # Qwen tiktoken
    r"|<SPECIAL_\d+>"  # Mistral Tekken
    r"|\[control_\d+\]"  # Mistral SentencePiece
    r"|<\|placeholder\d+\|>"  # Phi-3
    r"|<\|dummy_\d+\|>"  # Phi-4
    r"|<｜place▁holder▁no▁\d+｜>"  # DeepSeek-V3
)

# Roles as they appear in chat templates ("model" is Gemma's assistant).
_ROLE_NAMES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "model": "assistant",
}
_ROLE_AHEAD = re.compile(r"\s*(" + "|".join(_ROLE_NAMES) + r")\b")
_ROLE_ANYWHERE = re.compile(r"\b(" + "|".join(_ROLE_NAMES) + r")\b")
_PROBES = (("system", "user", "assistant", "user"), ("user", "assistant", "user"), ("user",))

_TEMPLATE_EVIDENCE = {
    "bos": "chat template: leading token, the bos_token",
    "turn_start": "chat template: opens each turn, before the role name",
    "header_end": "chat template: closes the role header, before the content",
    "turn_end": "chat template: after each message's content",
}


@dataclass(frozen=True)
class TokenRoles:
    """Roles of one token and, in parallel, where each came from."""

    roles: tuple[str, ...]
    evidence: tuple[str, ...]


def is_placeholder(content: str) -> bool:
    """A reserved slot with no meaning yet.

    >>> is_placeholder("<unused12>"), is_placeholder("<|reserved_special_token_3|>"), is_placeholder("<|im_end|>")
    (True, True, False)
    """
    return _PLACEHOLDER.fullmatch(content) is not None


def known_role(content: str) -> tuple[str, str] | None:
    """(role, families) of a marker in `KNOWN_FAMILIES`: `known_role("<|end|>") -> ("turn_end", "Phi-3/4, harmony")`."""
    found = [(table[content], family) for family, table in KNOWN_FAMILIES.items() if content in table]
    if not found:
        return None
    return found[0][0], ", ".join(family for _, family in found)


def special_roles(
    tokenizer: Tokenizer, config_roles: dict[str, str], chat_template: str | None
) -> dict[int, TokenRoles]:
    """Roles of every special added token and every placeholder, by id (see the module docstring)."""
    added = tokenizer.get_added_tokens_decoder()
    placed = template_roles(chat_template, added, config_roles) if chat_template else {}
    result = {}
    for index in sorted(added):
        content = added[index].content
        if not (added[index].special or is_placeholder(content) or index in placed):
            continue
        found: dict[str, list[str]] = {}
        for key, value in config_roles.items():
            if value == content and key in CONFIG_KEYS:
                found.setdefault(CONFIG_KEYS[key], []).append(f"tokenizer_config.json {key}")
        structural = placed.get(index)
        known = known_role(content)
        if structural:
            role, evidence = structural
            if known:
                verdict = "agrees" if known[0] == role else f"says {known[0]}"
                evidence = f"{evidence}; known family {known[1]} {verdict}"
            found.setdefault(role, []).append(evidence)
        elif known:
            found.setdefault(known[0], []).append(f"known family {known[1]}")
        if is_placeholder(content):
            found.setdefault("unused", []).append("placeholder name")
        if not found:
            found["marker"] = ["no role in the config, the chat template or a known family"]
        result[index] = TokenRoles(tuple(found), tuple("; ".join(e) for e in found.values()))
    return result


def template_roles(
    chat_template: str, added: dict[int, AddedToken], config_roles: dict[str, str]
) -> dict[int, tuple[str, str]]:
    """id -> (role, evidence) of the added tokens the rendered chat template places (majority of occurrences)."""
    rendered, contents = _render_probe(chat_template, config_roles)
    if rendered is None:
        return {}
    by_content = {token.content: index for index, token in added.items() if token.content.strip()}
    present = sorted((c for c in by_content if c in rendered), key=len, reverse=True)
    if not present:
        return {}
    # The rendered probe split into markers and the text between them ("" in `texts` for a marker).
    items = [p for p in re.split("(" + "|".join(map(re.escape, present)) + ")", rendered) if p]
    texts = [item if item not in by_content else "" for item in items]
    votes: dict[int, Counter[str]] = {}
    for i, item in enumerate(items):
        if item not in by_content:
            continue
        role = _position_role(items, texts, i, contents, config_roles.get("bos_token"))
        if role:
            votes.setdefault(by_content[item], Counter())[role] += 1
    result = {}
    for index, counter in votes.items():
        role = counter.most_common(1)[0][0]
        who = role.partition(":")[2]
        result[index] = (
            role,
            _TEMPLATE_EVIDENCE.get(role) or f"chat template: opens the {who}'s turn, before its content",
        )
    return result


def _render_probe(chat_template: str, config_roles: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """The template rendered on the first probe conversation it accepts, and content -> message role."""
    from transformers.utils.chat_template_utils import render_jinja_template

    for probe in _PROBES:
        contents = {f"Pq{i}x": role for i, role in enumerate(probe)}
        messages = [{"role": role, "content": content} for content, role in contents.items()]
        try:
            rendered, _ = render_jinja_template(
                [messages], chat_template=chat_template, add_generation_prompt=True, **config_roles
            )
        except Exception:  # a template refuses a conversation with raise_exception or a type error
            continue
        return rendered[0], contents
    return None, {}


def _position_role(items: list[str], texts: list[str], i: int, contents: dict[str, str], bos: str | None) -> str | None:
    """The role the position of marker `items[i]` shows, or None (see the module docstring, step 2)."""
    before = texts[i - 1] if i > 0 else ""
    after = texts[i + 1] if i + 1 < len(items) else ""
    if i == 0 and items[0] == bos:
        return "bos"
    if _ROLE_AHEAD.match(after):
        return "turn_start"
    ahead = sorted((c for c in contents if c in after), key=after.index)
    if ahead and after.lstrip().startswith(ahead[0]):
        # Back to the previous content: a role name on the way means this token closes a header.
        for earlier in reversed(texts[:i]):
            if any(c in earlier for c in contents):
                break
            if _ROLE_ANYWHERE.search(earlier):
                return "header_end"
        return f"turn_start:{contents[ahead[-1]]}"
    if any(before.rstrip().endswith(c) for c in contents):
        return "turn_end"
    return None
