"""A tokenizer written as a folder that `load_vocab` (and Hugging Face) reopen with the same roles.

`tokenizer.json`, a `tokenizer_config.json` naming the BOS/EOS/PAD/UNK pieces (what the roles of
`xtoken_align.roles` read first) and any extra files, written whole or not at all.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer

from xtoken_align.atomic import atomic_folder
from xtoken_align.vocab import Vocab

CONFIG_ROLES = ("bos", "eos", "pad", "unk")


def role_config(vocab: Vocab) -> dict[str, str]:
    """tokenizer_config.json entries that keep `vocab`'s BOS/EOS/PAD/UNK with a copy of its tokenizer."""
    roles = vocab.roles()
    return {f"{role}_token": vocab.pieces[roles[role]] for role in CONFIG_ROLES if role in roles}


def save_tokenizer_folder(
    folder: str | Path, tokenizer: Tokenizer, config: dict, extra: dict[str, str] | None = None
) -> Path:
    """Write `tokenizer`, `config` as tokenizer_config.json and each `extra` name -> text into
    `folder` (replaced whole if it exists)."""
    folder = Path(folder)
    with atomic_folder(folder) as building:
        (building / "tokenizer.json").write_text(tokenizer.to_str(), encoding="utf-8")
        (building / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        for name, text in (extra or {}).items():
            (building / name).write_text(text, encoding="utf-8")
    return folder
