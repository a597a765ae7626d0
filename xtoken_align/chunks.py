"""Byte-offset alignment: group two tokenisations of the same text into chunks covering the same bytes.

A chunk closes wherever both sides have a token boundary at the same byte offset (method.md §3:
on clean text this gives the same chunks as the paper's Needleman-Wunsch alignment, in linear
time). Left out: the DP aligner, BOS handling and the one-position shift for next-token
prediction, which belong to the distillation data pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Alignment:
    student_chunk: np.ndarray  # (n_student,) chunk id of each student token
    teacher_chunk: np.ndarray  # (n_teacher,) chunk id of each teacher token
    bounds: np.ndarray  # (n_chunks + 1,) byte offsets where chunks start/end
    disagreeing: np.ndarray  # byte offsets that are a boundary on one side only

    @property
    def chunks(self) -> int:
        return len(self.bounds) - 1


def align_by_bytes(
    student_starts: np.ndarray, student_end: int, teacher_starts: np.ndarray, teacher_end: int
) -> Alignment:
    """Chunks from token start offsets (sorted) and each side's end offset.

    >>> a = align_by_bytes(np.array([0, 3]), 6, np.array([0, 1, 2, 3]), 6)  # "201 x" vs "2","0","1"," x"
    >>> a.student_chunk.tolist(), a.teacher_chunk.tolist(), a.bounds.tolist()
    ([0, 1], [0, 0, 0, 1], [0, 3, 6])
    """
    student_bounds = np.union1d(student_starts, [student_end])
    teacher_bounds = np.union1d(teacher_starts, [teacher_end])
    # If the two sides' bytes diverge (a normaliser changed the text), everything after the last
    # shared boundary becomes one final chunk rather than being dropped.
    bounds = np.union1d(np.intersect1d(student_bounds, teacher_bounds), [0, max(student_end, teacher_end)])
    disagreeing = np.setxor1d(student_bounds, teacher_bounds)
    last = max(len(bounds) - 2, 0)
    student_chunk = np.clip(np.searchsorted(bounds, student_starts, side="right") - 1, 0, last)
    teacher_chunk = np.clip(np.searchsorted(bounds, teacher_starts, side="right") - 1, 0, last)
    return Alignment(student_chunk, teacher_chunk, bounds, disagreeing)
