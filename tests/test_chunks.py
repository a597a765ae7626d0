"""Byte-offset chunks of two tokenisations, including texts whose bytes diverge."""

import numpy as np

from xtoken_align.chunks import align_by_bytes


def test_numeral_is_one_chunk_with_its_digits() -> None:
    # "201 x": student "201"," x"; teacher "2","0","1"," x"
    a = align_by_bytes(np.array([0, 3]), 5, np.array([0, 1, 2, 3]), 5)
    assert a.student_chunk.tolist() == [0, 1] and a.teacher_chunk.tolist() == [0, 0, 0, 1]
    assert a.bounds.tolist() == [0, 3, 5] and a.disagreeing.tolist() == [1, 2]


def test_diverging_bytes_end_in_one_final_chunk() -> None:
    """A normaliser that adds bytes on one side must not push tokens outside every chunk."""
    a = align_by_bytes(np.array([0, 4, 6]), 9, np.array([0, 4]), 7)
    assert a.chunks == 2
    assert a.student_chunk.tolist() == [0, 1, 1] and a.teacher_chunk.tolist() == [0, 1]
    assert a.student_chunk.max() < a.chunks and a.teacher_chunk.max() < a.chunks


def test_empty_sides() -> None:
    a = align_by_bytes(np.array([], dtype=np.int64), 0, np.array([0]), 3)
    assert a.teacher_chunk.tolist() == [0] and a.chunks == 1
