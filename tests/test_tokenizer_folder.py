"""Tokenizer folders: written whole or not at all, reopened with the same vocabulary and roles."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import vocab

from xtoken_align.tokenizer_folder import role_config, save_tokenizer_folder
from xtoken_align.vocab import load_vocab


@pytest.mark.parametrize("name", ["llama2", "llama3", "qwen3"])
def test_a_saved_folder_reopens_as_the_same_vocabulary(tmp_path: Path, name: str) -> None:
    original = vocab(name)
    folder = save_tokenizer_folder(tmp_path / name, original.tokenizer, role_config(original))
    copy = load_vocab(str(folder))
    assert copy.fingerprint == original.fingerprint
    for role in ("bos", "eos", "pad", "unk"):
        assert copy.roles().get(role) == original.roles().get(role), role


def test_an_existing_folder_is_replaced_whole_and_kept_on_failure(tmp_path: Path) -> None:
    llama2 = vocab("llama2")
    folder = tmp_path / "tok"
    save_tokenizer_folder(folder, llama2.tokenizer, role_config(llama2), {"old.txt": "old"})
    save_tokenizer_folder(folder, llama2.tokenizer, {}, {"new.txt": "new"})
    assert sorted(p.name for p in folder.iterdir()) == ["new.txt", "tokenizer.json", "tokenizer_config.json"]
    with pytest.raises(FileNotFoundError):  # a file in a missing sub-folder: the write fails half way
        save_tokenizer_folder(folder, llama2.tokenizer, {}, {"missing/sub.txt": "x"})
    assert sorted(p.name for p in folder.iterdir()) == ["new.txt", "tokenizer.json", "tokenizer_config.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["tok"]  # no temporary folder left behind
