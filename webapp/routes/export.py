"""GET /api/teachers/{teacher}/export/{format}: the current W (base + edits) as a download."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import Response

from webapp.deps import WorkspaceDep
from xtoken_align.formats import EXPORT_SUFFIXES, export

router = APIRouter(tags=["export"])
MEDIA = {
    "safetensors": "application/zip",
    "nemo": "application/octet-stream",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}


@router.get(
    "/teachers/{teacher}/export/{fmt}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def export_projection(
    teacher: str, fmt: Literal["safetensors", "nemo", "csv", "parquet"], workspace: WorkspaceDep
) -> Response:
    """safetensors: a zip of W.safetensors and its sidecar (edit history included); nemo: the
    NeMo-RL/TRL `.pt` (indices, likelihoods); csv/parquet: one row per W entry."""
    state = workspace.teacher(teacher)
    stem = f"W-{workspace.student.name}-{state.key}"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{stem}{EXPORT_SUFFIXES[fmt]}"
        summary = export(workspace.export(state.key), workspace.student, state.vocab, path, fmt)
        if len(summary.files) > 1:  # W and its sidecar travel together, as one zip
            body, name = _zip([Path(f) for f in summary.files]), f"{stem}.zip"
        else:
            body, name = path.read_bytes(), path.name
    return Response(body, media_type=MEDIA[fmt], headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _zip(paths: list[Path]) -> bytes:
    """The files as one deflated zip, each under its own name."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in paths:
            archive.write(path, path.name)
    return buffer.getvalue()
