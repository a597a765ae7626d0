"""`cache_teachers`: run each live teacher of a run once over its training data and store its signal.

The samples are those the runner trains on (`data.training_set`: the same texts, cuts, tokenisations
and alignment), in training-set order, `shard_samples` to a shard. Each shard is written whole or not
at all (atomic.py), so a killed run resumes at the first missing shard and never reads half of one;
a resumed run writes the same bytes (fixed batches per shard, draws seeded per sample). Under torchrun,
rank r writes shards r, r + N, ...; rank 0 writes manifest.json and the tokenizer copy first.
Left out: what is stored per position (signal.py), reading a cache back (reader.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from tqdm import tqdm

from xtoken_align.atomic import atomic_path
from xtoken_align.distill.cache.ids import id_layout, pack_ids
from xtoken_align.distill.cache.manifest import (
    TOKENIZER,
    CacheManifest,
    data_files,
    model_fingerprint,
    sha256_file,
    shard_name,
)
from xtoken_align.distill.cache.report import CachedTeacher, CacheReport
from xtoken_align.distill.cache.signal import sparse_signal
from xtoken_align.distill.config import DistillConfig
from xtoken_align.distill.data import DistillDataset, collate, training_set
from xtoken_align.distill.distributed import Distributed
from xtoken_align.distill.teachers import TeacherPlan, prepare_teachers
from xtoken_align.errors import XTokenError
from xtoken_align.tokenizer_folder import role_config, save_tokenizer_folder
from xtoken_align.vocab import Vocab, load_vocab

LOGP_DTYPES = {"float16": np.float16, "float32": np.float32}


def cache_teachers(
    config: DistillConfig,
    out: str | Path,
    names: list[str] | None = None,
    topk: int = 64,
    sampled: int = 64,
    logp_dtype: str = "float16",
    shard_samples: int = 256,
    batch_size: int | None = None,
    seed: int = 0,
    models: dict[str, torch.nn.Module] | None = None,
) -> CacheReport:
    """Cache the teachers `names` (default: every live teacher) of `config` into `out`/NAME/.
    `models`: name -> a module (called as `model(input_ids=, attention_mask=).logits`) run in place of
    loading that teacher's `model:` folder, e.g. a synthetic teacher; the manifest records `model:`."""
    if not 0 <= sampled < 1 << 16:
        raise XTokenError(f"--samples {sampled} is outside 0..65535 (counts are uint16)")
    where = Distributed.from_env()
    student = load_vocab(config.student.tokenizer or config.student.model)
    plans = prepare_teachers(config, student)
    known = {p.name: p for p in plans}
    for name in names or []:
        if name not in known or known[name].cache is not None:
            live = [p.name for p in plans if p.cache is None]
            raise XTokenError(f"--teacher {name}: not a live teacher of the config (live teachers: {live})")
    chosen = [known[n] for n in names] if names else [p for p in plans if p.cache is None]
    vocabs = {p.name: (None if p.same_tokenizer else p.vocab) for p in chosen}
    dataset = training_set(config.data.train, config.data.limit, config.data.max_length, student, vocabs)
    options = dict(topk=topk, sampled=sampled, seed=seed, logp_dtype=logp_dtype, shard_samples=shard_samples)
    done, batch_size = [], batch_size or config.training.batch_size
    for plan in chosen:
        manifest = _manifest(config, plan, student, len(dataset), **options)
        folder = Path(out) / plan.name
        _start(folder, manifest, plan.vocab, where.main)
        given = (models or {}).get(plan.name)
        done.append(_cache_one(plan, manifest, folder, dataset, config, where, batch_size, given))
    if where.world > 1:  # the report comes once every rank's shards are written
        torch.distributed.barrier()
    return CacheReport(output=str(out), teachers=done)


def _manifest(config: DistillConfig, plan: TeacherPlan, student: Vocab, n: int, **options) -> CacheManifest:
    spec = plan.spec
    precision = "bfloat16" if _bf16(config) else "float32"
    return CacheManifest(
        teacher=plan.name, teacher_model=spec.model, teacher_model_fingerprint=model_fingerprint(spec.model),
        teacher_tokenizer=plan.vocab.name, teacher_tokenizer_fingerprint=plan.vocab.fingerprint,
        teacher_vocab_size=plan.vocab.size, student_tokenizer_fingerprint=student.fingerprint,
        data_files=data_files(config), data_limit=config.data.limit, max_length=config.data.max_length, samples=n,
        projection=spec.projection, projection_sha256=sha256_file(spec.projection) if spec.projection else None,
        topk=min(options["topk"], plan.vocab.size), id_layout=id_layout(plan.vocab.size), precision=precision,
        shards=-(-n // options["shard_samples"]), **{k: v for k, v in options.items() if k != "topk"},
    )  # fmt: skip


def _start(folder: Path, manifest: CacheManifest, vocab: Vocab, main: bool) -> None:
    """A new cache folder gets its manifest and tokenizer; an existing one must be the same cache."""
    if (folder / "manifest.json").is_file():
        old = CacheManifest.read(folder).model_dump()
        new = manifest.model_dump()
        differs = [k for k in new if old[k] != new[k] and k != "tool_version"]
        if differs:
            key = differs[0]
            raise XTokenError(f"{folder} holds a cache made with other settings ({key}: {old[key]!r}, now "
                              f"{new[key]!r}); choose another -o or delete it")  # fmt: skip
        return
    if main:
        folder.mkdir(parents=True, exist_ok=True)
        save_tokenizer_folder(folder / TOKENIZER, vocab.tokenizer, role_config(vocab))
        manifest.save(folder)  # last: a folder with a manifest has its tokenizer


def _bf16(config: DistillConfig) -> bool:
    wanted = config.training.precision  # as the runner decides it (runner._bf16)
    if wanted == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return wanted == "bf16"


def _cache_one(plan, manifest, folder, dataset, config, where, batch_size, model=None) -> CachedTeacher:
    from transformers import AutoModelForCausalLM

    mine = [j for j in range(manifest.shards) if j % where.world == where.rank]
    missing = [j for j in mine if not (folder / shard_name(j)).is_file()]
    for j in missing:  # what a killed run left half-written (atomic.py's temporary names) goes
        for stale in folder.glob(f".{shard_name(j)}.*.tmp"):
            stale.unlink(missing_ok=True)
    positions, seconds = 0, 0.0
    if missing:
        bf16 = _bf16(config)
        if model is None:
            dtype = torch.bfloat16 if bf16 else torch.float32
            model = AutoModelForCausalLM.from_pretrained(plan.spec.model, dtype=dtype)
        model = model.to(where.device).eval().requires_grad_(False)
        shards = [
            range(j * manifest.shard_samples, min((j + 1) * manifest.shard_samples, len(dataset))) for j in missing
        ]
        # Progress per batch of samples (a shard can take minutes), with teacher tokens/s and the ETA.
        bar = tqdm(
            total=sum(map(len, shards)), desc=f"cache {plan.name}", unit="sample", disable=not where.main or None
        )
        started = time.perf_counter()

        def advance(samples: int, tokens: int) -> None:
            nonlocal positions
            positions += tokens
            bar.update(samples)
            bar.set_postfix(tok_s=f"{positions / (time.perf_counter() - started):,.0f}")

        for j, indices in zip(missing, shards, strict=True):
            tensors = shard_tensors(model, plan.name, dataset, list(indices), manifest, batch_size, where.device, bf16,
                                    advance)  # fmt: skip
            with atomic_path(folder / shard_name(j)) as temp:
                save_file(tensors, str(temp), metadata={"format": manifest.format})  # one key: byte-stable
        bar.close()
        seconds = time.perf_counter() - started
    return CachedTeacher(
        name=plan.name, folder=str(folder), shards=manifest.shards, written=len(missing),
        reused=len(mine) - len(missing), positions=positions, tokens_per_s=round(positions / max(seconds, 1e-9), 1),
    )  # fmt: skip


@torch.no_grad()
def shard_tensors(model, name: str, dataset: DistillDataset, indices: list[int], manifest: CacheManifest,
                  batch_size: int, device: torch.device, bf16: bool,
                  advance: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """The arrays of one shard: per sample its offsets, teacher ids and chunk ids, per teacher position
    its sparse signal (signal.py), in `indices` order, batched `batch_size` samples at a time;
    `advance(samples, teacher tokens)` after each batch."""
    parts: dict[str, list[np.ndarray]] = {}
    vocab_size = manifest.teacher_vocab_size
    for start in range(0, len(indices), batch_size):
        samples = [dataset[i] for i in indices[start : start + batch_size]]
        batch = collate(samples)
        ids, mask = batch["teacher_input_ids"][name].to(device), batch["teacher_attention_mask"][name].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids, attention_mask=mask).logits
        logp = torch.log_softmax(logits[..., :vocab_size].float(), dim=-1)  # (B, T_t, V_T)
        for row, sample in enumerate(samples):
            alignment = sample.alignments[name]
            length = len(alignment.teacher_ids)
            following = torch.full((length,), -1, dtype=torch.long, device=device)
            following[:-1] = ids[row, 1:length]
            generator = torch.Generator(device=device).manual_seed(manifest.seed * 1_000_003 + sample.index)
            signal = sparse_signal(logp[row, :length], following, manifest.topk, manifest.sampled, generator)
            found = {k: v.cpu().numpy() for k, v in signal.items()}
            _add(parts, "input_ids", alignment.teacher_ids)
            _add(parts, "teacher_chunk", alignment.teacher_chunk.astype(np.int32))
            _add(parts, "student_chunk", alignment.student_chunk.astype(np.int32))
            _add(parts, "length", np.array([length, len(alignment.student_chunk)], dtype=np.int64))
            for key in ("next_logp", "residual"):
                _add(parts, key, found[key].astype(np.float32))
            for key in ("topk_logp", "sample_logp"):
                _add(parts, key, found[key].astype(LOGP_DTYPES[manifest.logp_dtype]))
            _add(parts, "topk_ids", found["topk_ids"])
            _add(parts, "sample_ids", found["sample_ids"])
            _add(parts, "sample_counts", found["sample_counts"].astype(np.uint16))
        if advance is not None:
            advance(len(samples), int(mask.sum()))
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    lengths = arrays.pop("length").reshape(-1, 2)
    arrays["index"] = np.asarray(indices, dtype=np.int64)
    arrays["offsets"] = np.concatenate([[0], np.cumsum(lengths[:, 0])]).astype(np.int64)
    arrays["student_offsets"] = np.concatenate([[0], np.cumsum(lengths[:, 1])]).astype(np.int64)
    for key in ("input_ids", "topk_ids", "sample_ids"):
        arrays.update(pack_ids(key, arrays.pop(key), manifest.id_layout))
    return arrays


def _add(parts: dict[str, list[np.ndarray]], key: str, value: np.ndarray) -> None:
    parts.setdefault(key, []).append(value)
