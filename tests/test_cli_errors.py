"""Bad input at the console script, as a new user gives it: each is refused with exactly one
`xtoken-align: error:` line naming the problem, exit status 2, and nothing written."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

PAIR = ("--student", "demo:llama2", "--teacher", "demo:llama3")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A W (llama2 x llama3), its NeMo export and a truncated copy, in a folder tests never write to."""
    from xtoken_align.cli import main

    folder = tmp_path_factory.mktemp("inputs")
    w, pt = folder / "W.safetensors", folder / "W.pt"
    assert main(["build", *PAIR, "-o", str(w)]) == 0
    assert main(["export", str(w), "--format", "nemo", "-o", str(pt)]) == 0
    truncated = folder / "truncated.pt"
    truncated.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    garbage = folder / "garbage.pt"
    garbage.write_bytes(bytes(range(256)) * 20)
    return {"w": w, "pt": pt, "truncated": truncated, "garbage": garbage}


def refused(result: subprocess.CompletedProcess[str], *named: str) -> None:
    """One error line naming every string in `named`, status 2, no traceback (before it, at most
    `distill`'s progress lines: `starting: ...`, `[  0.0 s] ...`)."""
    lines = [line for line in result.stderr.splitlines() if not re.match(r"(starting: |\[ *\d+\.\d s\] )", line)]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("xtoken-align: error: "), result.stderr
    for text in named:
        assert text in lines[0], result.stderr


def listing(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is a folder, not a file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks binary"),
        (b"\xff\xfe\xfd garbage", "is not UTF-8 text"),
        (b"student:\n  model: x\n  bad: a: b\n", "run.yaml:3:9: not valid YAML (mapping values are not allowed here)"),
    ],
)
def test_distill_refuses_a_config_it_cannot_read(run_cli, tmp_path: Path, content: bytes | None, message: str) -> None:
    config = tmp_path / "run.yaml"
    config.mkdir() if content is None else config.write_bytes(content)
    before = listing(tmp_path)
    refused(run_cli("distill", "--config", str(config)), message)
    assert listing(tmp_path) == before


def test_build_rules_yaml_error_is_one_line_with_its_place(run_cli, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: exact\n")
    refused(
        run_cli("build", *PAIR, "-o", str(tmp_path / "W.safetensors"), "--config", str(rules)),
        f"{rules}:3:1: not valid YAML (expected ',' or '}}', but got '<stream end>')",
    )
    assert listing(tmp_path) == [rules]


def test_distill_override_that_is_not_yaml(run_cli, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("student: {model: demo:llama2}\n")
    refused(run_cli("distill", "--config", str(config), "training.steps=["), "override 'training.steps=['")


@pytest.mark.parametrize(
    "args",
    [
        ["build", *PAIR, "--top-k", "0"],
        ["build", *PAIR, "--top-k", "-2"],
        ["score", "W.safetensors", "--limit", "-3"],
        ["score", "W.safetensors", "--limit", "0"],
        ["export", "W.safetensors", "--format", "nemo", "--student-rows", "0"],
        ["distill", "--config", "run.yaml", "--stop-after", "0"],
        ["vocab", "demo:llama2", "--samples", "-1"],
    ],
)
def test_counts_must_be_positive(run_cli, tmp_path: Path, args: list[str]) -> None:
    option = next(a for a in args if a.startswith("--") and a not in PAIR and a not in ("--format", "--config"))
    out = ["-o", str(tmp_path / ("W.pt" if "export" in args else "W.safetensors"))]
    if args[0] in ("build", "export"):
        args = [*args, *out]
    refused(run_cli(*args), f"argument {option}: {args[args.index(option) + 1]}")
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("fmt", "name", "message"),
    [
        ("csv", "missing/sub/W.csv", "output folder {tmp}/missing/sub does not exist"),
        ("parquet", "missing/W.parquet", "output folder {tmp}/missing does not exist"),
        ("nemo", "missing/W.pt", "output folder {tmp}/missing does not exist"),
        ("csv", "W.parquet", "should end in .csv (--format csv writes .csv files)"),
        ("parquet", "W.csv", "should end in .parquet"),
        ("nemo", "W.csv", "should end in .pt (--format nemo writes .pt files)"),
    ],
)
def test_export_refuses_missing_folder_and_wrong_suffix(run_cli, files, tmp_path: Path, fmt, name, message) -> None:
    refused(
        run_cli("export", str(files["w"]), "--format", fmt, "-o", str(tmp_path / name)),
        message.format(tmp=tmp_path),
    )
    assert listing(tmp_path) == []


def test_build_and_import_refuse_a_missing_folder(run_cli, files, tmp_path: Path) -> None:
    out = str(tmp_path / "missing" / "W.safetensors")
    refused(run_cli("build", *PAIR, "-o", out), f"output folder {tmp_path}/missing does not exist")
    refused(run_cli("import", str(files["pt"]), *PAIR, "-o", out), "does not exist")
    refused(run_cli("import", str(files["pt"]), *PAIR, "-o", str(tmp_path / "W.pt")), "should end in .safetensors")
    (tmp_path / "W.safetensors").mkdir()
    refused(run_cli("build", *PAIR, "-o", str(tmp_path / "W.safetensors")), "is a folder, not a file")
    assert listing(tmp_path) == [tmp_path / "W.safetensors"]


@pytest.mark.parametrize("name", ["garbage", "truncated"])
def test_import_refuses_an_unreadable_pt(run_cli, files, tmp_path: Path, name: str) -> None:
    out = tmp_path / "W.safetensors"
    refused(run_cli("import", str(files[name]), *PAIR, "-o", str(out)), "not a readable PyTorch/reference W file")
    assert listing(tmp_path) == []


def test_import_refuses_a_pt_made_for_other_tokenizers(run_cli, files, tmp_path: Path) -> None:
    out = str(tmp_path / "W.safetensors")
    other = ("--student", "demo:llama2", "--teacher", "demo:qwen3")
    refused(run_cli("import", str(files["pt"]), *other, "-o", out), "teacher demo:llama3", "--teacher demo:qwen3")
    swapped = ("--student", "demo:llama3", "--teacher", "demo:llama2")
    refused(run_cli("import", str(files["pt"]), *swapped, "-o", out), "swapped")
    assert listing(tmp_path) == []


def test_distill_hint_names_the_teacher_to_build_w_for(run_cli, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        "student: {model: demo:llama2}\nteachers:\n  - {model: demo:llama3}\n"
        f"data: {{train: [x]}}\noutput: {{dir: {tmp_path / 'run'}}}\n"
    )
    result = run_cli("distill", "--config", str(config))
    refused(result, "xtoken-align build --student demo:llama2 --teacher demo:llama3")
    assert "None" not in result.stderr and listing(tmp_path) == [config]


def test_serve_refuses_a_busy_port_before_loading(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        command = [sys.executable, "-m", "webapp.cli", "serve", "--demo", "--workspace", str(tmp_path / "ws")]
        result = subprocess.run(
            [*command, "--port", str(port)], capture_output=True, text=True, env=os.environ, timeout=120
        )
    refused(result, f"port {port}", "already in use", "--port")
    assert listing(tmp_path) == []  # no workspace made, no tokenizer loaded
