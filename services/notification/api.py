"""Notification routes under /api/notifications: a customer sees only their own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from services.common.auth import CurrentUser
from services.common.db import SessionDep
from services.notification.models import Notification, NotificationPublic

router = APIRouter(prefix="/api/notifications", tags=["notifications"])


@router.get("", response_model=list[NotificationPublic], summary="My notifications, newest first")
async def list_notifications(user: CurrentUser, session: SessionDep,
                             limit: Annotated[int, Query(ge=1, le=500)] = 50,
                             offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[Notification]:
    query = (select(Notification).where(Notification.user_id == user.sub)
             .order_by(Notification.id.desc()).limit(limit).offset(offset))
    return list((await session.scalars(query)).all())
