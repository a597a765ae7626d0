"""GET /api/meta: what this server holds, for the UI to start from."""

from fastapi import APIRouter

from webapp.deps import SettingsDep, WorkspaceDep
from webapp.schemas import Meta, TeacherView, TokenizerView
from xtoken_align.categories import CATEGORY_ORDER
from xtoken_align.rules import RULE_CODES

router = APIRouter(tags=["meta"])


@router.get("/meta", response_model=Meta)
def meta(workspace: WorkspaceDep, settings: SettingsDep) -> Meta:
    student = workspace.student
    return Meta(
        student=TokenizerView(
            name=student.name, source=student.source, size=student.size, fingerprint=student.fingerprint
        ),
        teachers=[
            TeacherView(
                key=key, name=t.vocab.name, source=t.vocab.source, size=t.vocab.size, fingerprint=t.vocab.fingerprint
            )
            for key, t in workspace.teachers.items()
        ],
        workspace=str(workspace.folder),
        rules=list(RULE_CODES),
        categories=list(CATEGORY_ORDER),
        max_text_chars=settings.max_text_chars,
        max_page_size=settings.max_page_size,
    )
