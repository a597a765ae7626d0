"""What a workspace (webapp/workspace.py) and `xtoken-align serve` refuse: a folder made for other
tokenizers, a W for other tokenizers, a missing --student or --teacher; and recovery from a W file
without its sidecar.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import vocab
from web_fixtures import MISTRAL, STUDENT, TEACHER_KEYS, TEACHERS, copy_workspace, open_workspace

from xtoken_align.errors import XTokenError
from xtoken_align.formats import load_projection, save_projection


def test_workspace_for_other_tokenizers_is_refused(web_workspace, tmp_path: Path) -> None:
    folder = copy_workspace(web_workspace, tmp_path / "ws").folder
    with pytest.raises(XTokenError, match=r"was made for llama2, llama3, mistral-v1; give another --workspace"):
        open_workspace(folder, STUDENT, ["demo:mistral-v1"])
    with pytest.raises(XTokenError, match="was made for llama2, llama3, mistral-v1"):
        open_workspace(folder, "demo:llama3", list(TEACHERS))
    assert open_workspace(folder, STUDENT, list(TEACHERS)).teachers.keys() == set(TEACHER_KEYS)


def test_serve_command_refuses_a_foreign_workspace(web_workspace, tmp_path: Path, capsys) -> None:
    from webapp.cli import main

    folder = copy_workspace(web_workspace, tmp_path / "ws").folder
    code = main(["serve", "--student", STUDENT, "--teacher", "demo:mistral-v1", "--workspace", str(folder)])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"xtoken-align: error: workspace {folder} was made for llama2, llama3, mistral-v1; give another --workspace"
    )


def test_serve_refuses_a_projection_for_other_tokenizers(web_workspace, tmp_path: Path, capsys) -> None:
    from webapp.cli import main

    llama3_w = web_workspace.folder / "W-llama3.safetensors"
    with pytest.raises(
        XTokenError, match="teacher tokenizer mistral-v1 has 32,000 tokens but W was built for llama3 with 128,256"
    ):
        open_workspace(tmp_path / "a", STUDENT, ["demo:mistral-v1"], [str(llama3_w)])
    code = main(["serve", "--student", STUDENT, "--teacher", "demo:mistral-v1", "--projection", str(llama3_w),
                 "--workspace", str(tmp_path / "b")])  # fmt: skip
    assert code == 2 and "W was built for llama3" in capsys.readouterr().err
    assert not (tmp_path / "b" / "W-mistral-v1.safetensors").exists()

    # same sizes, other vocabulary: a W whose sidecar names another teacher fingerprint
    other = tmp_path / "other" / "W.safetensors"
    projection = load_projection(llama3_w)
    save_projection(replace(projection, teacher=replace(projection.teacher, fingerprint="0" * 64)), other)
    with pytest.raises(XTokenError, match="canonical vocabulary fingerprints differ"):
        open_workspace(tmp_path / "c", STUDENT, ["demo:llama3"], [str(other)])
    with pytest.raises(XTokenError, match="one per teacher"):
        open_workspace(tmp_path / "d", STUDENT, list(TEACHERS), [str(llama3_w)])


def test_serve_needs_student_and_teacher(capsys) -> None:
    from webapp.cli import main

    assert main(["serve", "--student", STUDENT]) == 2
    assert "serve needs --student and --teacher (or --demo)" in capsys.readouterr().err


def test_workspace_recovers_from_a_w_file_without_its_sidecar(web_workspace, tmp_path: Path) -> None:
    folder = copy_workspace(web_workspace, tmp_path / "ws").folder
    (folder / "W-mistral-v1.json").unlink()  # what a kill between the two renames leaves
    reopened = open_workspace(folder, STUDENT, list(TEACHERS))
    assert reopened.teacher(MISTRAL).base.shape == (vocab("llama2").size, vocab("mistral-v1").size)
