"""The uncommon-token study (issue 7): does GOLD suppress multi-digit numerals with a digit-splitting
teacher, does P-KL restore them, does H-KL beat GOLD with o200k? Why does the Qwen3 teacher cost the
student its other tokens, and what does a SentencePiece-spelled teacher change (issue 17)? Everything
is trained from scratch here with the project's own DistillRunner, tiny models and the real tokenizers,
output layers restricted to the study's tokens (`xtoken-align restrict`; every numeral kept). See
README.md beside this file.

    python experiments/numerals/run.py [--quick | --scale full|large] [--device cpu|cuda] [--full-vocab]
                                       [--seeds N] [--out DIR] [--headline] [--extras] [--no-multi-teacher]
                                       [--live-teachers]

Teachers are pre-trained with the runner too: CE only (loss.combine=fixed, kd_weight=0, ce_weight=1)
with a throw-away 1-layer same-tokenizer "kd" teacher whose term has weight 0 (the runner needs one)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
if (ROOT.parent / "shared" / "tokenizers").is_dir():  # else the demo cache that `make` set-up fills
    os.environ.setdefault("XTOKEN_ALIGN_TOKENIZERS", str(ROOT.parent / "shared" / "tokenizers"))

from evaluation import evaluate, training_signs  # noqa: E402  the study's own modules, next to this file
from study_data import study_texts, write_data  # noqa: E402

# One set of hyperparameters for every method; only the scale differs between modes. `large` is for a GPU.
SMALL_MODELS = dict(student=dict(hidden=64, layers=2, heads=4), teacher=dict(hidden=128, layers=2, heads=4))
SCALES = {
    "quick": dict(warmup_steps=4, student_steps=4, teacher_steps=4, batch=2, max_length=32, gsm_train=40,
                  arith_train=40, eval_texts=8, arith_eval=4, eval_every=2, curve_texts=4, **SMALL_MODELS),
    "full": dict(warmup_steps=150, student_steps=80, teacher_steps=250, batch=8, max_length=64, gsm_train=3000,
                 arith_train=3000, eval_texts=60, arith_eval=30, eval_every=10, curve_texts=16, **SMALL_MODELS),
    "large": dict(warmup_steps=1500, student_steps=800, teacher_steps=3000, batch=16, max_length=128,
                  gsm_train=7473, arith_train=20000, eval_texts=300, arith_eval=200, eval_every=50, curve_texts=64,
                  student=dict(hidden=256, layers=4, heads=8), teacher=dict(hidden=512, layers=4, heads=8)),
}  # fmt: skip
LR, WARMUP, TOPK, TAIL = 3e-3, 5, 2048, 1024
HEADLINE = ["ce", "gold-qwen3", "p_kl-qwen3", "h_kl-o200k", "gold-o200k"]
# Rows that carry a claim of issue 17, run with every seed: the controls of the Qwen3 degradation (an
# oracle teacher with Qwen3's tokenizer; P-KL's aggregation and CE/KD combination, p_kl-qwen3 being the
# mean / dynamic default) and the SentencePiece-spelled teacher (Llama-2's tokenizer).
CONTROLS = ["p_kl-oracle", "gold-oracle", "p_kl-qwen3@first", "p_kl-qwen3@chain", "p_kl-qwen3@fixed"]
SENTENCEPIECE = ["gold-llama2", "h_kl-llama2", "p_kl-llama2"]
# P-KL as the reference code computes it (loss.semantics: reference, docs/method.md §9) beside ours,
# with both teachers whose numerals the study reads (p_kl-qwen3 is the `ours` row for Qwen3).
REFERENCE = ["p_kl-qwen3@reference", "p_kl-o200k", "p_kl-o200k@reference"]
CLAIMS = CONTROLS + SENTENCEPIECE + REFERENCE
# Several teachers, static (equal) weights vs weights from a softmax of −teacher CE (`ce`): seed 0 only
# (no claim rests on them); --no-multi-teacher leaves them out.
MULTI = ["two-static", "two-ce", "three-static", "three-ce"]
# The other rows of methods() (kd-llama3, ULD, H-KL with Qwen3, learned W, P-KL with o200k, the o200k +
# Llama-3 pair) are single-seed extras no claim rests on: behind --extras since issue 17, whose rows
# (every seed) would otherwise take the default run past the 30-minute limit.
# One row of each kind: oracle, aggregation, combination, SentencePiece teacher, several teachers.
QUICK_METHODS = ["ce", "gold-qwen3", "p_kl-qwen3", "h_kl-o200k", "p_kl-oracle", "p_kl-qwen3@chain",
                 "p_kl-qwen3@fixed", "h_kl-llama2", "p_kl-qwen3@reference", "three-ce"]  # fmt: skip
TEACHERS = ("qwen3", "o200k", "llama2")  # the other-tokenizer teachers (llama2: SentencePiece spelling)


def methods() -> dict[str, list[dict]]:
    """name -> teacher list (keys: teacher, loss, weight, learn_w)."""
    table = {"ce": [], "kd-llama3": [dict(teacher="llama3", loss="kd")]}
    for t in ("qwen3", "o200k"):
        for loss in ("gold", "uld", "p_kl", "h_kl"):
            table[f"{loss}-{t}"] = [dict(teacher=t, loss=loss)]
        table[f"p_kl_learn-{t}"] = [dict(teacher=t, loss="p_kl", learn_w=True)]
    table["two:h_kl-o200k+kd-llama3"] = [
        dict(teacher="o200k", loss="h_kl", weight=0.8),
        dict(teacher="llama3", loss="kd", weight=0.2),
    ]
    for name in CONTROLS + SENTENCEPIECE + REFERENCE:  # "loss-teacher" or "loss-teacher@option" (loss_options)
        loss, teacher = name.split("@")[0].split("-")
        table[name] = [dict(teacher=teacher, loss=loss)]
    # Each teacher with the loss `diagnose` picks for it (numerals unmatched in Qwen3 and Llama-2: P-KL;
    # all matched in o200k: H-KL); equal static weights, nothing tuned.
    two = [dict(teacher="qwen3", loss="p_kl", weight=0.5), dict(teacher="o200k", loss="h_kl", weight=0.5)]
    three = [{**t, "weight": 1 / 3} for t in two] + [dict(teacher="llama2", loss="p_kl", weight=1 / 3)]
    for mode in ("static", "ce"):
        table[f"two-{mode}"], table[f"three-{mode}"] = two, three
    return table


def loss_options(name: str) -> dict:
    """The `loss:` settings a method changes from the study's one set (all else identical)."""
    option = name.split("@")[1] if "@" in name else None
    if option in ("mean", "first", "chain"):
        return {"aggregation": option}
    if option == "reference":
        return {"semantics": "reference"}
    if option == "fixed":  # the reference's fixed weights (method.md §4), in place of the dynamic scale
        return {"combine": "fixed", "kd_weight": 1.0, "ce_weight": 0.1}
    if name.endswith("-ce"):  # several teachers: α from a softmax of −teacher CE per micro-batch
        return {"teacher_weighting": "ce"}
    return {}


def common_sets(student, teacher, projection) -> dict:
    """What GOLD (raw string matches) and H-KL (W's top weight >= 0.6) each treat as common."""
    from xtoken_align.distill.sparse_w import ProjectionW

    gold = dict(zip(*(ids.tolist() for ids in ProjectionW.string_common_set(student, teacher)), strict=True))
    hkl = projection.common_set()
    multi = {i for i, c in enumerate(student.categories) if c in ("digits:2", "digits:3", "digits:4+")}
    return {
        "gold": len(gold), "hkl": len(hkl), "same_pairs": len(set(gold.items()) & set(hkl.items())),
        "multi_digit": len(multi), "gold_multi_digit": len(multi & gold.keys()),
        "hkl_multi_digit": len(multi & hkl.keys()),
    }  # fmt: skip


# ---- runs --------------------------------------------------------------------------------------------
def config(student, teachers: list[dict], data: dict, out: Path, s: dict, steps: int, seed: int, ce_only=False,
           curve=True, options: dict | None = None):  # fmt: skip
    """A run config; `student` is a model folder, or (weights, tokenizer folder) for a checkpoint.
    Without `curve` it evaluates only at the end; `options` override `loss:` settings."""
    from xtoken_align.distill.config import DistillConfig

    loss = {"topk": TOPK, "tail": TAIL, "combine": "dynamic", **(options or {})}
    if ce_only:
        loss |= {"combine": "fixed", "kd_weight": 0.0, "ce_weight": 1.0}
    return DistillConfig.from_dict(
        {
            "student": {"model": str(student[0]), "tokenizer": str(student[1])}
            if isinstance(student, tuple)
            else {"model": str(student)},
            "teachers": teachers,
            "data": {"train": [str(data["train"])], "eval": [str(data["heldout"])], "max_length": s["max_length"]},
            "training": {"steps": steps, "batch_size": s["batch"], "lr": LR, "warmup_steps": WARMUP, "seed": seed},
            "loss": loss,
            "output": {"dir": str(out), "save_every": steps, "eval_every": s["eval_every"] if curve else steps},
            "eval": {"texts": s["curve_texts"]},
        }
    )


def null_teacher(model: Path) -> dict:
    """A 1-layer same-tokenizer teacher for CE-only runs: the runner needs one; its term gets weight 0."""
    return {"name": "null", "model": str(model), "loss": "kd"}


def pretrain(model: Path, null: Path, data: dict, out: Path, s: dict, steps: int, seed: int) -> float:
    """CE-only training (teachers, and the students' shared warm start); evaluated at the end only."""
    return train(config(model, [null_teacher(null)], data, out, s, steps, seed, ce_only=True, curve=False), out)


def train(cfg, out: Path) -> float:
    import shutil

    from xtoken_align.distill.runner import DistillRunner

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    DistillRunner(cfg).run()
    return time.perf_counter() - started


CACHE = {"topk": 64, "sampled": 64, "logp_dtype": "float32"}  # per teacher position (docs/teacher-cache.md)


def cache_teachers_once(teachers: dict, data: dict, out: Path, s: dict, results: dict, log) -> dict[str, Path]:
    """Each pre-trained teacher run once over the training data (`cache-teacher`); every student run
    then reads its cache. Made without W (W does not enter the stored signal), so one cache serves
    every loss; the same data, cuts and max_length as the student runs."""
    from xtoken_align.distill.cache.writer import cache_teachers

    specs = [{"name": name, "model": str(weights), "tokenizer": str(init), "loss": "kd" if name == "llama3" else "uld"}
             for name, (weights, init) in teachers.items()]  # fmt: skip
    started = time.perf_counter()
    student = out / "init" / "null-llama3"  # any Llama-3 folder: caching reads the student's tokenizer only
    cfg = config(student, specs, data, out / "cache-run", s, steps=1, seed=0)
    report = cache_teachers(cfg, out / "cache", None, seed=0, **CACHE)
    results["teacher_cache"] = {"wall_s": time.perf_counter() - started, **CACHE,
                                "teachers": {t.name: t.model_dump() for t in report.teachers}}  # fmt: skip
    log(f"teachers cached once in {results['teacher_cache']['wall_s']:.0f}s")
    return {t.name: Path(t.folder) for t in report.teachers}


def cache_oracle(vocab, data: dict, out: Path, s: dict, results: dict, log) -> Path:
    """The oracle teacher's cache (oracle.py): Qwen3's tokenizer, `MASS` on the true next teacher token
    at every position; written by the cache writer from that module, in its format and settings."""
    from oracle import MASS, OracleTeacher  # the study's own module, next to this file

    from xtoken_align.distill.cache.writer import cache_teachers

    spec = {"name": "oracle", "model": f"oracle:next-token-mass-{MASS}", "tokenizer": str(vocab.source), "loss": "uld"}
    started = time.perf_counter()
    cfg = config(out / "init" / "null-llama3", [spec], data, out / "cache-run", s, steps=1, seed=0)
    report = cache_teachers(cfg, out / "cache", None, seed=0, models={"oracle": OracleTeacher(vocab.size)}, **CACHE)
    results["oracle"] = {"mass": MASS, "wall_s": time.perf_counter() - started, "vocab_size": vocab.size}
    log(f"oracle teacher (mass {MASS} on the next qwen3 token) cached in {results['oracle']['wall_s']:.0f}s")
    return Path(report.teachers[0].folder)


def teacher_source(name: str, teachers: dict, caches: dict[str, Path]) -> dict:
    """A student run's teacher: its cache, or (with --live-teachers) its model and tokenizer folders."""
    if name in caches:
        return {"cache": str(caches[name])}
    return {"model": str(teachers[name][0]), "tokenizer": str(teachers[name][1])}


def latest(out: Path) -> Path:
    return out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip() / "student"


# ---- main --------------------------------------------------------------------------------------------
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="pipeline check: same as --scale quick")
    p.add_argument("--scale", choices=list(SCALES), default="full", help="full: the CPU study; large: for a GPU")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--out", type=Path, default=HERE / "output")
    p.add_argument("--full-vocab", action="store_true", help="full 128k-200k output layers (for a GPU)")
    p.add_argument("--headline", action="store_true", help="headline rows and h_kl-qwen3 only, every seed")
    p.add_argument("--live-teachers", action="store_true",
                   help="run the teacher models in every student run (default: cache each teacher once)")  # fmt: skip
    p.add_argument("--extras", action="store_true",
                   help="also the single-seed rows no claim rests on (ULD, learned W, ...; seed 0)")  # fmt: skip
    p.add_argument("--no-multi-teacher", dest="multi_teacher", action="store_false",
                   help="leave out the 2- and 3-teacher rows, static vs adaptive weights (seed 0)")  # fmt: skip
    args = p.parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the runner picks cuda whenever it sees one
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible to torch")
    args.mode = "quick" if args.quick else args.scale
    return args


def tokenizers(texts: list[str], out: Path, full_vocab: bool, results: dict, log) -> dict:
    """The student's and every teacher's vocabulary: output layers restricted to the tokens of the
    study's text, every numeral kept (restrict.py), or whole with `full_vocab`."""
    from xtoken_align.restrict import restrict
    from xtoken_align.vocab import load_vocab

    vocabs = {}
    for name in ("llama3", *TEACHERS):
        full = load_vocab(f"demo:{name}")
        if full_vocab:
            vocabs[name] = full
            continue
        restriction = restrict(full, texts)
        vocabs[name] = load_vocab(str(restriction.save(out / "tokenizers" / name)))
        results["vocab"][name] = {"full": full.size, "kept": restriction.size, "reasons": restriction.reasons}
        log(f"{name}: output layer {full.size:,} -> {restriction.size:,} tokens")
    return vocabs


def projections(vocabs: dict, out: Path, results: dict) -> dict[str, Path]:
    """W (default rules) from the student to each teacher, saved, and each pair's common sets."""
    from xtoken_align.formats import save_projection
    from xtoken_align.projection import build_projection

    ws = {}
    for t in TEACHERS:
        projection = build_projection(vocabs["llama3"], vocabs[t], progress=False)
        ws[t] = save_projection(projection, out / f"W-llama3-{t}.safetensors")
        results["common"][t] = common_sets(vocabs["llama3"], vocabs[t], projection)
    return ws


def pretrain_teachers(vocabs: dict, data: dict, out: Path, s: dict, device, extras: bool, results: dict, log):
    """Teachers: CE-only pre-training, larger and longer than the students; {name: (weights, init folder)}."""
    from xtoken_align.distill.models import tiny_model

    families = {"qwen3": "qwen3", "o200k": "llama", "llama3": "llama", "llama2": "llama"}
    teachers = {}
    for name, family in families.items():
        init = tiny_model(family, vocabs[name], out / "init" / f"teacher-{name}", seed=7, **s["teacher"])
        null = tiny_model(family, vocabs[name], out / "init" / f"null-{name}", hidden=16, layers=1, heads=2, seed=0)
        if name == "llama3" and not extras:  # the same-tokenizer teacher serves only the extras' rows
            continue
        run_dir = out / "teachers" / name
        wall = pretrain(init, null, data, run_dir, s, s["teacher_steps"], seed=0)
        weights = latest(run_dir)  # checkpoints hold weights only: the tokenizer comes from `init`
        results["teachers"][name] = {"wall_s": wall, **evaluate(weights, vocabs[name], data, s, device)}
        teachers[name] = (weights, init)
        log(f"teacher {name}: {results['teachers'][name]['nats_per_char']:.3f} nats/char in {wall:.0f}s")
    return teachers


def seed_methods(seed: int, args: argparse.Namespace, table: dict) -> list[str]:
    """The rows a seed trains: quick's few; seed 0 every row asked for, later seeds the rows that carry
    a claim; --headline the headline rows and H-KL with Qwen3 (where a negative H-KL could matter)."""
    if args.mode == "quick":
        return QUICK_METHODS
    if args.headline:
        return [*HEADLINE, "h_kl-qwen3"]
    names = list(table) if seed == 0 else HEADLINE + CLAIMS
    wanted = HEADLINE + CLAIMS + (MULTI if args.multi_teacher else [])
    return [n for n in names if n in wanted or (args.extras and n not in MULTI)]


def student_runs(seed: int, names: list[str], sources: dict, data: dict, out: Path, s: dict, device, results, log):
    """One seed: the shared CE warm start, then every method in `names` from it. `sources` holds the
    methods' table and the vocabularies, W files, teachers and caches their teachers come from."""
    from xtoken_align.distill.models import tiny_model

    vocab, table = sources["vocabs"]["llama3"], sources["table"]
    student = tiny_model("llama", vocab, out / "init" / f"student-seed{seed}", seed=100 + seed, **s["student"])
    null = tiny_model("llama", vocab, out / "init" / "null-student", hidden=16, layers=1, heads=2)
    # The shared initialisation is a CE-warmed student, as the paper distils into a pre-trained model:
    # numerals it has learnt are what a loss can then push down or keep.
    warm_dir = out / "students" / f"warm-start-seed{seed}"
    wall = pretrain(student, null, data, warm_dir, s, s["warmup_steps"], seed=seed)
    results["runs"][f"warm-start/{seed}"] = row = {
        "method": "warm-start", "seed": seed, "wall_s": wall, "curve": [],
        **evaluate(latest(warm_dir), vocab, data, s, device),
    }  # fmt: skip
    start = json.loads((warm_dir / "eval.jsonl").read_text().splitlines()[-1])["next_token"]
    log(f"warm start seed {seed}: ce {row['ce_token']:.3f} multi-acc {row['multi_acc']:.3f} ({wall:.0f}s)")
    warm = (latest(warm_dir), student)  # weights, and the folder with the tokenizer
    for name in names:
        specs = [
            {"name": f"{t['teacher']}-{i}", **teacher_source(t["teacher"], sources["teachers"], sources["caches"]),
             "loss": t["loss"], "weight": t.get("weight", 1.0), "learn_w": t.get("learn_w", False),
             "projection": str(sources["ws"][t["teacher"]]) if t["loss"] in ("p_kl", "h_kl") else None}
            for i, t in enumerate(table[name])
        ] or [null_teacher(null)]  # fmt: skip
        run_dir = out / "students" / f"{name}-seed{seed}"
        cfg = config(warm, specs, data, run_dir, s, s["student_steps"], seed, ce_only=name == "ce",
                     options=loss_options(name))  # fmt: skip
        wall = train(cfg, run_dir)
        row = {"method": name, "seed": seed, "wall_s": wall, **evaluate(latest(run_dir), vocab, data, s, device)}
        row |= training_signs(run_dir)
        evals = [json.loads(x) for x in (run_dir / "eval.jsonl").read_text().splitlines()]
        evals.insert(0, {"step": 0, "next_token": start})
        row["curve"] = [[e["step"], e["next_token"].get("multi_digit_mass@numeral")] for e in evals]
        results["runs"][f"{name}/{seed}"] = row
        log(f"{name} seed {seed}: ce {row['ce_token']:.3f} multi-acc {row['multi_acc']:.3f} ({wall:.0f}s)")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    from xtoken_align.distill.run_log import quiet_libraries

    quiet_libraries()  # the study's own log lines, not transformers' loading bars
    s, seeds = SCALES[args.mode], args.seeds or (1 if args.mode == "quick" else 3)
    out, device, t0 = args.out.resolve(), torch.device(args.device), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", flush=True)  # noqa: E731
    data = write_data(out, s)
    results = {"mode": args.mode, "teachers": {}, "runs": {}, "vocab": {}, "common": {}}
    vocabs = tokenizers(study_texts(data), out, args.full_vocab, results, log)
    ws = projections(vocabs, out, results)
    log("data and W files ready")
    teachers = pretrain_teachers(vocabs, data, out, s, device, args.extras, results, log)
    caches = {} if args.live_teachers else cache_teachers_once(teachers, data, out, s, results, log)
    caches["oracle"] = cache_oracle(vocabs["qwen3"], data, out, s, results, log)  # cached even when live
    ws["oracle"] = ws["qwen3"]
    sources = {"table": methods(), "vocabs": vocabs, "ws": ws, "teachers": teachers, "caches": caches}
    for seed in range(seeds):
        names = seed_methods(seed, args, sources["table"])
        student_runs(seed, names, sources, data, out, s, device, results, log)
    results["wall_s"] = time.perf_counter() - t0
    results["command"] = "python experiments/numerals/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results["settings"] = {"scale": s, "lr": LR, "warmup": WARMUP,
                           "topk": TOPK, "tail": TAIL, "seeds": seeds, "device": args.device,
                           "full_vocab": args.full_vocab, "multi_teacher": args.multi_teacher or args.mode == "quick",
                           "extras": args.extras,
                           "teachers": "live" if args.live_teachers else CACHE}  # fmt: skip
    from report import write_report  # the study's own helper, next to this file

    before = HERE / "results-before-issue12.json"  # the published run before the loss fixes (issue 12)
    before = json.loads(before.read_text()) if before.is_file() and args.mode == "full" else None
    write_report(results, out, before)
    if out == (HERE / "output").resolve():  # the default run also publishes its results beside this script
        write_report(results, HERE, before)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
