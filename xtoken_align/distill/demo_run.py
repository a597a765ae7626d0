"""`xtoken-align distill --demo`: a first run end to end in minutes, on this machine, with nothing to download.

    demo/
      models/student   a tiny LlamaForCausalLM with the real Llama-3 tokenizer (128,256 tokens)
      models/teacher   a tiny Qwen3ForCausalLM with the real Qwen3 tokenizer (151,669 tokens, lm_head 151,936)
      W-llama3-qwen3.safetensors   W built by the default rules
      data/train.jsonl, data/eval.jsonl   GSM8K problems shipped with the package (disjoint)
      cache/qwen3      the teacher's signal, cached once (`cache-teacher`)
      run.yaml         the run config: the cached teacher under P-KL; edit it and run it again
      run/             what the run writes: metrics.jsonl, metrics.html, summary.json, checkpoints

Both models are randomly initialised (seeded): the demo shows the pipeline and its outputs, not a
distillation result (experiments/numerals is the study). Once cached, the teacher model folder is not
read again: the run trains from the cache alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from xtoken_align.corpus import default_corpus
from xtoken_align.distill.config import DistillConfig
from xtoken_align.errors import XTokenError

TRAIN_TEXTS, EVAL_TEXTS = 80, 40  # GSM8K test problems: the first 40 held out, the next 80 to train on


def prepare_demo(folder: str | Path, steps: int, log: Callable[[str], None]) -> DistillConfig:
    """Make the demo's models, W, data, teacher cache and run config in `folder` (reused when present)."""
    from xtoken_align.distill.cache.writer import cache_teachers
    from xtoken_align.distill.models import tiny_model
    from xtoken_align.formats import load_projection, save_projection
    from xtoken_align.projection import build_projection
    from xtoken_align.vocab import load_vocab

    folder = Path(folder)
    started = time.perf_counter()

    def step(message: str) -> None:
        log(f"[{time.perf_counter() - started:5.1f} s] {message}")

    step("loading the Llama-3 and Qwen3 demo tokenizers")
    student, teacher = load_vocab("demo:llama3"), load_vocab("demo:qwen3")
    models = folder / "models"
    if not (models / "student" / "config.json").is_file():
        step("making a tiny Llama-3 student (hidden 64, 2 layers) and a tiny Qwen3 teacher (hidden 128, 4 layers)")
        tiny_model("llama", student, models / "student", hidden=64, layers=2, seed=1)
        tiny_model("qwen3", teacher, models / "teacher", hidden=128, layers=4, seed=2, output_rows=151_936)
    w_path = folder / "W-llama3-qwen3.safetensors"
    if w_path.is_file():
        load_projection(w_path, student, teacher)  # a damaged or foreign W is refused, not trained on
    else:
        step("building W with the default rules")
        save_projection(build_projection(student, teacher, progress=False), w_path)
    data = folder / "data"
    _write_data(data)
    live = _config(folder, steps, teacher={"model": str(models / "teacher")})
    cache = folder / "cache"
    if not (cache / "qwen3" / "manifest.json").is_file():
        step("caching the teacher's signal once (top-k ids and log-probabilities, sampled tail)")
        cache_teachers(live, cache, None, seed=0)
    step("training the student from the cached teacher")
    config = _config(folder, steps, teacher={"cache": str(cache / "qwen3")})
    (folder / "run.yaml").write_text(
        "# xtoken-align distill --config run.yaml   (made by `xtoken-align distill --demo`)\n" + config.dump()
    )
    return config


def _config(folder: Path, steps: int, teacher: dict) -> DistillConfig:
    return DistillConfig.from_dict(
        {
            "student": {"model": str(folder / "models" / "student")},
            "teachers": [
                {"name": "qwen3", **teacher, "projection": str(folder / "W-llama3-qwen3.safetensors"), "loss": "p_kl"}
            ],
            "data": {
                "train": [str(folder / "data" / "train.jsonl")],
                "eval": [str(folder / "data" / "eval.jsonl")],
                "max_length": 128,
            },  # fmt: skip
            "training": {"steps": steps, "batch_size": 4, "grad_accum": 1, "lr": 3e-4, "warmup_steps": 2},
            "output": {"dir": str(folder / "run"), "save_every": max(steps, 1), "log_every": 1},
            "eval": {"texts": EVAL_TEXTS, "gsm8k_problems": 0},
        },
        origin="distill --demo",
    )


def _write_data(data: Path) -> None:
    rows = [line for line in default_corpus().read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(rows) < EVAL_TEXTS + TRAIN_TEXTS:
        needed = EVAL_TEXTS + TRAIN_TEXTS
        raise XTokenError(f"the packaged GSM8K file has {len(rows)} problems; the demo needs {needed}")
    data.mkdir(parents=True, exist_ok=True)
    for name, part in (("eval", rows[:EVAL_TEXTS]), ("train", rows[EVAL_TEXTS : EVAL_TEXTS + TRAIN_TEXTS])):
        text = "\n".join(json.dumps(json.loads(row)) for row in part) + "\n"
        path = data / f"{name}.jsonl"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
