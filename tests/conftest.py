"""Shared fixtures: the demo tokenizers (../shared when it is there, else the cache `make` set-up
fetches into) and GSM8K (test bundled with the package, train with the experiments).

Loading a 200k vocabulary takes a second or two, so vocabularies are loaded once per session.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import pytest

from xtoken_align.demo import DEMOS, cache_dir

# Shared fixtures of the web, browser and loss tests, loaded once for the whole session (and rewritten for
# assertions, since test modules also import their helpers).
pytest_plugins = ["web_fixtures", "loss_fixtures", "browser_fixtures"]

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# Tests read the demo tokenizers from ../shared when it is there, else from the user cache
# (which `make test` fills with `xtoken-align fetch-demos` before pytest starts).
if "XTOKEN_ALIGN_TOKENIZERS" not in os.environ and (SHARED / "tokenizers").is_dir():
    os.environ["XTOKEN_ALIGN_TOKENIZERS"] = str(SHARED / "tokenizers")

# The folder of the demos that ../shared holds (the first seven), else the cache; for any demo,
# `demo_file` finds it wherever demo_path() resolves it.
TOKENIZERS = Path(os.environ.get("XTOKEN_ALIGN_TOKENIZERS") or cache_dir())
GSM8K = {
    "test": ROOT / "xtoken_align" / "data" / "gsm8k" / "test.jsonl",
    "train": ROOT / "experiments" / "data" / "gsm8k" / "train.jsonl",
}

# Every family we support, by demo name.
FAMILIES = ["llama3", "qwen3", "o200k", "llama2", "llama3-tiktoken", "qwen-tiktoken", "mistral-v1"]
FAMILIES += ["gemma3", "cl100k", "llama3.1", "tekken", "mistral-v3", "llama4-tiktoken"]


# Resolved once, before any test points the environment at a temporary cache.
CACHE = cache_dir()


def demo_file(name: str, file: str | None = None) -> Path:
    """A file of demo `name` (default: its main file) where demo_path() finds it: ../shared when
    that holds the demo's folder, else the cache. Never fetched; test_demo checks the two agree."""
    demo = DEMOS[name]
    folder = TOKENIZERS / demo.folder if (TOKENIZERS / demo.folder).is_dir() else CACHE / demo.folder
    path = folder / (file or demo.main_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run `xtoken-align fetch-demos` (make setup does)")
    return path


def demo_files(name: str) -> dict[str, Path]:
    """Every file of demo `name`, by its name in the demo's folder."""
    return {file: demo_file(name, file) for file in DEMOS[name].files}


@cache
def vocab(name: str):
    from xtoken_align.vocab import load_vocab

    return load_vocab(f"demo:{name}")


@cache
def gsm8k(split: str = "test") -> list[str]:
    rows = [json.loads(line) for line in GSM8K[split].read_text(encoding="utf-8").splitlines() if line.strip()]
    return [f"{row['question']}\n{row['answer']}" for row in rows]


@pytest.fixture
def gsm8k_texts() -> list[str]:
    return gsm8k("test")


@pytest.fixture
def run_cli():
    """Run the real console script in a subprocess; returns CompletedProcess with text output."""
    import subprocess
    import sys

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "xtoken_align.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, timeout=600)

    return run
