"""A cached teacher signal (docs/teacher-cache.md): each teacher run once over the training data,
its distribution stored sparsely per position, read back by the runner in place of the model.

    ids.py       token ids in the fewest bits the vocabulary needs (uint8 / uint16 / uint16 + uint8)
    manifest.py  what a cache was made from, and the one-line refusal of a cache made for other inputs
    signal.py    a position's log-probabilities -> top-K + next token + sampled tail, and back (torch)
    writer.py    `cache_teachers`: the `cache-teacher` command (sharded, atomic, resumable, per rank)
    reader.py    `TeacherCache`: checks a cache against a run and reads its log-probabilities, sparse
    report.py    `CacheReport`, what `cache-teacher --json` prints (no torch)

This file imports nothing, so the report's schema can be listed without torch. Left out: the losses,
which read a `SparseTeacher` (losses/sparse_teacher.py) as they read a live teacher's logits.
"""
