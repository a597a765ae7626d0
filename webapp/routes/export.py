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
from xtoken_align.io import export_table, save_projection

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
def export(teacher: str, fmt: Literal["safetensors", "nemo", "csv", "parquet"], workspace: WorkspaceDep) -> Response:
    """safetensors: a zip of W.safetensors and its sidecar (edit history included); nemo: the
    NeMo-RL/TRL `.pt` (indices, likelihoods); csv/parquet: one row per W entry."""
    state = workspace.teacher(teacher)
    projection = workspace.export(state.key)
    stem = f"W-{workspace.student.name}-{state.key}"
    with tempfile.TemporaryDirectory() as folder:
        if fmt == "safetensors":
            path = save_projection(projection, Path(folder) / f"{stem}.safetensors")
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.write(path, path.name)
                archive.write(path.with_suffix(".json"), path.with_suffix(".json").name)
            body, name = buffer.getvalue(), f"{stem}.zip"
        elif fmt == "nemo":
            from xtoken_align.distill.reference_format import export_reference

            path = export_reference(projection, Path(folder) / f"{stem}.pt")
            body, name = path.read_bytes(), path.name
        else:
            path = export_table(projection, workspace.student, state.vocab, Path(folder) / f"{stem}.{fmt}", fmt)
            body, name = path.read_bytes(), path.name
    return Response(body, media_type=MEDIA[fmt], headers={"Content-Disposition": f'attachment; filename="{name}"'})
