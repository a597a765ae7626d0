"""`BuildConfig`: which rules build W, in which order, with which parameters. Consumed by
`build_projection`, loadable from YAML or JSON, and written into every W file's sidecar.

Example `rules.yaml`:

    top_k: 4
    rules:
      - {name: special}
      - {name: exact}
      - {name: digits, beta: 0.9, gamma: 0.1}
      - {name: bytes}
      - {name: multitoken}
      - {name: fuzzy, weight: 0.3}     # off unless listed
      - {name: corpus, corpus: train.jsonl, prior: 10}   # off unless listed; last

Claiming rules (special, exact, digits, bytes, multitoken) fill a row only if no earlier claiming
rule did; adding rules (fuzzy, reverse) add lower-weight entries to rows that are not exact or
special matches. The blending rule (corpus) comes last and mixes corpus counts into the rows the
rules before it built (method.md §2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xtoken_align.errors import XTokenError
from xtoken_align.textfile import read_text


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _LeadingPieces(_Rule):
    """Weights β·γ^i for the i-th teacher piece of a re-tokenised student token (method.md §2);
    γ = 0: the first piece only."""

    beta: Annotated[float, Field(gt=0, le=1)] = 0.9
    gamma: Annotated[float, Field(ge=0, le=1)] = 0.1


class ExactRule(_Rule):
    """Canonical bytes equal: a one-hot row."""

    name: Literal["exact"] = "exact"


class SpecialRule(_Rule):
    """Special tokens map by role (bos, eos, turn_end, ...), never by string."""

    name: Literal["special"] = "special"


class DigitsRule(_LeadingPieces):
    """Numeral tokens, re-tokenised by a teacher that groups digits differently (`201` → 2,0,1)."""

    name: Literal["digits"] = "digits"


class BytesRule(_LeadingPieces):
    """Byte pieces and partial UTF-8: segmented over the teacher's canonical bytes, longest first."""

    name: Literal["bytes"] = "bytes"


class MultitokenRule(_LeadingPieces):
    """Any other token, re-tokenised by the teacher."""

    name: Literal["multitoken"] = "multitoken"


class FuzzyRule(_Rule):
    """Near-equivalent surface forms (case, NFKC, prefix), scored by rapidfuzz, at a lower weight."""

    name: Literal["fuzzy"] = "fuzzy"
    weight: Annotated[float, Field(gt=0, le=1)] = 0.3
    min_score: Annotated[float, Field(ge=0, le=100)] = 60.0
    min_prefix: Annotated[int, Field(ge=1)] = 3


class ReverseRule(_LeadingPieces):
    """The reference builder's reverse pass: teacher tokens re-tokenised by the student."""

    name: Literal["reverse"] = "reverse"
    weight: Annotated[float, Field(gt=0, le=1)] = 0.5


class CorpusRule(_Rule):
    """Teacher tokens seen opening each student token's chunk in a corpus, blended with the rows the
    rules before it built: row = (counts + prior · rule row) / (n + prior), n = the row's count.

    `prior` is how many corpus observations the string rules' (normalised) row is worth: a
    Dirichlet prior centred on it, so a row seen n ≫ prior times follows the corpus, a rarely seen
    row stays near its rules, prior → ∞ is the rules alone and prior = 0 the counts alone. Rows seen
    fewer than `min_count` times, special rows, exact rows (unless `blend_exact`) and rows the
    corpus never sees are left as the rules built them. Counts come from `spans.opening_pairs`:
    where a student token opens a chunk, the teacher token opening it (what `score` measures).
    """

    name: Literal["corpus"] = "corpus"
    corpus: Annotated[tuple[str, ...], Field(min_length=1)]  # JSONL or text files (`read_corpus`)
    limit: Annotated[int, Field(ge=1)] | None = None  # texts read per file; None: all
    prior: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 10.0
    min_count: Annotated[int, Field(ge=1)] = 3
    blend_exact: bool = False  # also blend exact rows (Llama's ` the` where o200k writes ` theory`)
    # sha256 of each corpus file, written by the build into W's sidecar; given, a build whose files
    # no longer match refuses to run (a W rebuilt from its sidecar sees the same text)
    sha256: tuple[str, ...] | None = None

    @field_validator("corpus", mode="before")
    @classmethod
    def _one_path_or_many(cls, value: object) -> object:
        if isinstance(value, str | Path):
            return (str(value),)
        return [str(v) if isinstance(v, Path) else v for v in value] if isinstance(value, list | tuple) else value


RuleConfig = Annotated[
    ExactRule | SpecialRule | DigitsRule | BytesRule | MultitokenRule | FuzzyRule | ReverseRule | CorpusRule,
    Field(discriminator="name"),
]
CLAIMING = ("special", "exact", "digits", "bytes", "multitoken")
ADDING = ("fuzzy", "reverse")
BLENDING = ("corpus",)


def default_rules() -> tuple[RuleConfig, ...]:
    return (SpecialRule(), ExactRule(), DigitsRule(), BytesRule(), MultitokenRule())


class BuildConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    top_k: Annotated[int, Field(ge=1, le=64)] = 4
    rules: tuple[RuleConfig, ...] = Field(default_factory=default_rules)

    @model_validator(mode="after")
    def _rules_once_each(self) -> BuildConfig:
        names = [rule.name for rule in self.rules]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"rules listed more than once: {', '.join(repeated)}")
        if not any(name in CLAIMING for name in names):
            raise ValueError(f"at least one of {', '.join(CLAIMING)} is needed to fill rows")
        if any(name in BLENDING for name in names[:-1]):
            raise ValueError("corpus blends with the rows the other rules built: list it last")
        return self

    def rule(self, name: str) -> RuleConfig | None:
        return next((rule for rule in self.rules if rule.name == name), None)

    @classmethod
    def from_dict(cls, data: object, origin: str = "config") -> BuildConfig:
        try:
            return cls.model_validate(data if data is not None else {})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
            raise XTokenError(f"{origin}: invalid build config: {problems}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> BuildConfig:
        return cls.from_dict(read_config(path), origin=str(path))


def read_config(path: str | Path) -> object:
    """The data of a YAML or JSON config file (JSON is YAML too), or one line saying why not:
    `run.yaml:3:5: not valid YAML (mapping values are not allowed here)`."""
    path = Path(path)
    text = read_text(path, "config", "a YAML or JSON file")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise XTokenError(f"{path}{yaml_place(exc)}: not valid YAML ({yaml_problem(exc)})") from None


def yaml_place(exc: yaml.YAMLError) -> str:
    """`:LINE:COLUMN` (1-based) of a YAML error, or "" when PyYAML gives no position."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f":{mark.line + 1}:{mark.column + 1}" if mark else ""


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message cut to its one-line problem: "mapping values are not allowed here"."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return " ".join(problem.split())


def apply_override(data: dict, item: str) -> None:
    """Apply `a.b.0.c=value` (value parsed as YAML) to nested dicts/lists."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise XTokenError(f"override '{item}' is not key=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise XTokenError(f"override '{item}': value is not valid YAML ({yaml_problem(exc)})") from None
    *path, last = key.split(".")
    try:
        node = data
        for part in path:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    except (ValueError, IndexError, TypeError, AttributeError):
        raise XTokenError(f"override '{item}': '{key}' does not name a place in the config") from None
