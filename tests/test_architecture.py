"""The design rules a reader should be able to trust, checked on the source tree itself.

- torch is imported only under `xtoken_align/distill/` and by the one W-format module that reads
  and writes the reference `.pt` files; the library never imports the web layer.
- No library module is over 300 lines.
- Every "method §N" the code, the docs and the CLI's advice cite names a section of docs/method.md.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "xtoken_align"
TORCH_HOMES = (LIBRARY / "distill", LIBRARY / "formats" / "reference.py")
MAX_LINES = 300
CITATION = re.compile(r"method(?:\.md)? ?§ ?(\d+[a-z]?)")


def imported_modules(path: Path) -> set[str]:
    """Top-level package names a module imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def library_modules() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def test_torch_lives_under_distill_and_the_reference_format_only() -> None:
    importers = [p for p in library_modules() if "torch" in imported_modules(p)]
    assert importers, "the distillation runner imports torch: the check must see it"
    strays = [p.relative_to(ROOT) for p in importers if not any(p.is_relative_to(home) for home in TORCH_HOMES)]
    assert strays == []


def test_the_library_never_imports_the_web_layer() -> None:
    assert [p.relative_to(ROOT) for p in library_modules() if "webapp" in imported_modules(p)] == []


def test_no_library_module_is_over_300_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n for p in library_modules() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def method_sections() -> set[str]:
    """Section numbers of docs/method.md: `## 4. Losses` gives 4, `### 2a. Special tokens` 2a."""
    text = (ROOT / "docs" / "method.md").read_text(encoding="utf-8")
    return set(re.findall(r"^#{2,3} (\d+[a-z]?)\.", text, re.M))


def test_every_method_citation_names_a_section() -> None:
    sections = method_sections()
    assert {"1", "4", "5"} <= sections
    cited: dict[str, set[str]] = {}
    for folder in ("xtoken_align", "webapp", "static", "docs", "experiments", "bench"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".js", ".md", ".html"}:
                for number in CITATION.findall(path.read_text(encoding="utf-8")):
                    cited.setdefault(number, set()).add(str(path.relative_to(ROOT)))
    for number in CITATION.findall((ROOT / "README.md").read_text(encoding="utf-8")):
        cited.setdefault(number, set()).add("README.md")
    assert len(cited) >= 5, "the code cites the method: the scan must find it"
    assert {n: files for n, files in cited.items() if n not in sections} == {}
