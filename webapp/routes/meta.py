"""GET /api/meta: what this server holds, for the UI to start from."""

from fastapi import APIRouter

from webapp.deps import SettingsDep, WorkspaceDep
from webapp.schemas import CompareView, Meta, TeacherView, TokenizerView
from xtoken_align.categories import CATEGORY_ORDER
from xtoken_align.projection import TokenizerInfo
from xtoken_align.rules import RULE_CODES

router = APIRouter(tags=["meta"])


@router.get("/meta", response_model=Meta)
def meta(workspace: WorkspaceDep, settings: SettingsDep) -> Meta:
    student = workspace.student
    return Meta(
        student=TokenizerView(**TokenizerInfo.of(student).as_dict()),
        teachers=[TeacherView(key=key, **TokenizerInfo.of(t.vocab).as_dict()) for key, t in workspace.teachers.items()],
        compare=[CompareView(name=c.name, teacher=c.teacher, path=c.path) for c in workspace.compares.values()],
        workspace=str(workspace.folder),
        rules=list(RULE_CODES),
        categories=list(CATEGORY_ORDER),
        max_text_chars=settings.max_text_chars,
        max_page_size=settings.max_page_size,
    )
