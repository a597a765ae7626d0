"""W as a model-hub folder: everything needed to share one W, ready for `huggingface-cli upload`.

`export_hub(projection, student, teacher, folder, score, diagnosis)` writes, whole or not at all:

    README.md              model card with the YAML front matter the Hugging Face hub reads
    card.json              the numbers the card shows: `score --json` and `diagnose --json` of this W
    W.safetensors, W.json  W and its sidecar (`formats.native`), byte for byte what `save_projection` writes
    W.pt                   the NeMo-RL / TRL X-Token file (`formats.reference`), checked by importing it back
    student_tokenizer/     both tokenizers as tokenizer.json folders (`tokenizer_folder`), so the folder
    teacher_tokenizer/     is self-contained: `--student DIR` / `--teacher DIR` open them

Reading one back: `load_projection(DIR)` reads its W.safetensors (so `--projection DIR` works wherever
a W file does), and the CLI's `--student`/`--teacher` map a hub folder to the subfolder of their role
(`role_tokenizer`). The sidecar keeps the tokenizer sources W was built from; the subfolders are the
copies to use where those are not at hand. Left out: uploading (the hub's own tool does it) and
model weights.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from xtoken_align.atomic import atomic_folder
from xtoken_align.diagnose.report import LOSS_NAMES, DiagnoseReport
from xtoken_align.errors import XTokenError
from xtoken_align.formats.native import save_projection
from xtoken_align.formats.reference import export_reference, import_reference
from xtoken_align.projection import Projection, TokenizerInfo
from xtoken_align.score.report import ScoreReport
from xtoken_align.tokenizer_folder import role_config, save_tokenizer_folder
from xtoken_align.vocab import Vocab

HUB_FORMAT = "xtoken-align-hub"
HUB_FORMAT_VERSION = 1
CARD, W_FILE, REFERENCE_FILE = "card.json", "W.safetensors", "W.pt"
TOKENIZER_FOLDERS = {"student": "student_tokenizer", "teacher": "teacher_tokenizer"}
TAGS = ("cross-tokenizer-distillation", "x-token", "xtoken-align", "knowledge-distillation")


def is_hub_folder(path: str | Path) -> bool:
    """True for a folder `export_hub` wrote (its card.json names the hub format)."""
    card = Path(path) / CARD
    if not card.is_file():
        return False
    try:
        return json.loads(card.read_text(encoding="utf-8")).get("format") == HUB_FORMAT
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False


def hub_projection_file(folder: str | Path) -> Path:
    """The W file of a hub folder, or XTokenError saying why `folder` is not one."""
    folder = Path(folder)
    if not is_hub_folder(folder):
        raise XTokenError(f"{folder} is a folder but not an xtoken-align hub export (no {CARD}); give a W file")
    return folder / W_FILE


def role_tokenizer(source: str, role: str) -> str:
    """A tokenizer source with a hub folder replaced by the subfolder of `role`, anything else unchanged:
    `role_tokenizer("out/hub", "student") -> "out/hub/student_tokenizer"`."""
    return str(Path(source) / TOKENIZER_FOLDERS[role]) if is_hub_folder(source) else source


def export_hub(
    projection: Projection,
    student: Vocab,
    teacher: Vocab,
    folder: str | Path,
    score: ScoreReport,
    diagnosis: DiagnoseReport,
) -> list[Path]:
    """Write the hub folder (see the module docstring); returns every file written, inside `folder`."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise XTokenError(f"{folder} exists and is not an empty folder; choose a new one")
    projection.check_tokenizers(student, teacher)
    if (score.student, score.teacher) != (projection.student, projection.teacher):
        raise XTokenError("the score report is of another W than the one exported")
    card = {
        "format": HUB_FORMAT,
        "format_version": HUB_FORMAT_VERSION,
        "score": json.loads(score.model_dump_json()),
        "diagnose": json.loads(diagnosis.model_dump_json()),
    }
    with atomic_folder(folder) as building:
        save_projection(projection, building / W_FILE)
        export_reference(projection, building / REFERENCE_FILE)
        import_reference(building / REFERENCE_FILE, student, teacher)  # the reference stacks can read it
        for role, vocab in (("student", student), ("teacher", teacher)):
            save_tokenizer_folder(building / TOKENIZER_FOLDERS[role], vocab.tokenizer, role_config(vocab))
        (building / CARD).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (building / "README.md").write_text(model_card(projection, score, diagnosis), encoding="utf-8")
        written = sorted(p.relative_to(building) for p in building.rglob("*") if p.is_file())
    return [folder / p for p in written]


def _hub_id(source: str) -> str | None:
    """A tokenizer source that names a hub model: `_hub_id("hf:Qwen/Qwen3-4B") -> "Qwen/Qwen3-4B"`."""
    bare = source.removeprefix("hf:")
    if source.startswith(("demo:", "tiktoken:", "/", ".")) or bare.count("/") != 1 or Path(source).exists():
        return None
    return bare


def _front_matter(projection: Projection) -> list[str]:
    lines = ["---", "library_name: xtoken-align", "tags:", *(f"- {tag}" for tag in TAGS)]
    models = [m for m in (_hub_id(projection.student.source), _hub_id(projection.teacher.source)) if m]
    if models:
        lines += ["base_model:", *(f"- {m}" for m in dict.fromkeys(models))]
    return [*lines, "---"]


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub-flavoured table, numbers right-aligned:
    `markdown_table(["a", "n"], [["x", 1]]) -> "| a | n |\n|---|--:|\n| x | 1 |"`."""
    numeric = [bool(rows) and all(isinstance(r[i], int | float) for r in rows) for i in range(len(header))]
    cell = [f"{v:,}" if isinstance(v, int) else str(v).replace("|", "\\|") for v in header]
    lines = ["| " + " | ".join(cell) + " |", "|" + "|".join("--:" if n else "---" for n in numeric) + "|"]
    for row in rows:
        lines.append(
            "| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v).replace("|", "\\|") for v in row) + " |"
        )
    return "\n".join(lines)


def _tokenizer_rows(projection: Projection) -> str:
    infos: list[tuple[str, TokenizerInfo]] = [("student", projection.student), ("teacher", projection.teacher)]
    return markdown_table(
        ["role", "name", "source", "size", "sha256 fingerprint", "copy here"],
        [[r, i.name, f"`{i.source}`", i.size, f"`{i.fingerprint}`", f"`{TOKENIZER_FOLDERS[r]}/`"] for r, i in infos],
    )


def history_summary(history: list[dict]) -> list[str]:
    """The edit history in a few lines: entries per action, rows touched, the notes written."""
    if not history:
        return ["No edits: W is as the rules built it."]
    actions = Counter(str(h.get("action", "?")) for h in history)
    rows = {h["student_id"] for h in history if isinstance(h.get("student_id"), int)}
    notes = list(dict.fromkeys(str(h["note"]) for h in history if h.get("note")))
    lines = [
        f"{len(history):,} history entries ({', '.join(f'{n:,} {a}' for a, n in actions.items())}), "
        f"{len(rows):,} student rows touched."
    ]
    lines += [f"- note: {note}" for note in notes[:10]]
    if len(notes) > 10:
        lines.append(f"- and {len(notes) - 10:,} more notes (W.json's `history` has them all)")
    return lines


def _loading(projection: Projection) -> list[str]:
    v_s, k = projection.shape[0], max(int(np.diff(projection.matrix.indptr).max(initial=1)), 1)
    return [
        "With this package (`pip install xtoken-align`):",
        "",
        "```bash",
        "xtoken-align score DIR                       # W.safetensors; tokenizers from the sidecar's sources",
        "xtoken-align score DIR --student DIR --teacher DIR   # or the copies in this folder",
        "```",
        "",
        "```python",
        "from xtoken_align.formats import load_projection",
        "W = load_projection(DIR)  # checked against W.json; W.matrix is a scipy CSR [V_S, V_T]",
        "```",
        "",
        "In a distill config, `projection: DIR`.",
        "",
        f"With the reference stacks (NeMo-RL `tools/x_token/`, TRL's X-Token): `{REFERENCE_FILE}` is a "
        f"`torch.save`d dict with `indices` int64 [{v_s:,}, {k}] (teacher ids, -1 for an empty slot), "
        f"`likelihoods` float32 [{v_s:,}, {k}], `student_model_id`, "
        "`teacher_model_id` and `enable_scale_trick` (False). It was checked on export by importing it back "
        "(`xtoken-align import W.pt`). Pad rows to a model's vocabulary size with "
        "`xtoken-align export DIR --format nemo --student-rows N`.",
    ]


def model_card(projection: Projection, score: ScoreReport, diagnosis: DiagnoseReport) -> str:
    """README.md of a hub folder: front matter, tokenizers, coverage, diagnosis, edits, rules, loading."""
    s, t = projection.student, projection.teacher
    rows = score.rows
    lines = [
        *_front_matter(projection),
        "",
        f"# Cross-tokenizer projection W: {s.name} → {t.name}",
        "",
        f"A sparse {score.shape[0]:,} × {score.shape[1]:,} matrix W ({score.nnz:,} entries) that maps the "
        f"student tokenizer's ids to the teacher's, built by xtoken-align {projection.tool_version} on "
        f"{projection.created}. Every number below is in `{CARD}` (`score` and `diagnose` as `--json` prints them).",
        "",
        "## Tokenizers",
        "",
        _tokenizer_rows(projection),
        "",
        "## Coverage",
        "",
        f"Regular rows filled: {rows.regular_filled:,} / {rows.regular:,}; summing to 1: "
        f"{rows.regular_summing_to_1:,}. Off-piece mass: {score.off_piece_mass.rows_with_off_piece_mass:,} rows.",
        "",
        markdown_table(
            ["category", "total", "covered", "exact", "H-KL common"],
            [[k, v.total, v.covered, v.exact, v.common] for k, v in score.coverage.items()],
        ),
    ]
    if score.corpus:
        c = score.corpus
        lines += [
            "",
            f"Corpus {Path(c.name).name}: {c.texts:,} texts, {c.student_tokens:,} student tokens, "
            f"agreement@1 {c.agreement_at_1:.4f}, mean W mass on the teacher's token {c.mass:.4f}.",
        ]
    lines += ["", "## Diagnosis: the loss to train with", ""]
    for entry in diagnosis.teachers:
        lines.append(f"- **{entry.teacher.name}: {LOSS_NAMES[entry.recommendation]}** — {entry.reason}")
        if entry.corpus:
            lines.append(
                f"  - outside GOLD's strict set: {entry.corpus.suppressed_mass:.2%} of student next tokens "
                f"(critical categories: {entry.corpus.critical_suppressed_mass:.2%}) on {entry.corpus.name}"
            )
    lines += [f"\nCritical categories: {', '.join(diagnosis.critical)}.", "", "## Edit history", ""]
    lines += history_summary(projection.history)
    config = json.dumps(projection.config.model_dump(mode="json"), indent=2) if projection.config else "null"
    lines += ["", "## Rule config", "", "```json", config, "```", "", "## How to load", "", *_loading(projection)]
    return "\n".join(lines) + "\n"
