"""User routes under /api/users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from sqlalchemy.exc import IntegrityError

from services.common.auth import CurrentUser, Principal, service_caller
from services.common.bus import publish_committed
from services.common.db import SessionDep, add_to_outbox
from services.common.demo import DEMO_ACCOUNTS, DEMO_CLIENTS
from services.common.passwords import hash_password_async
from services.user import credentials, events
from services.user.models import (Credential, CredentialCheck, CredentialResult, UserAccount, UserCreate,
                                  UserPublic, UserUpdate)

router = APIRouter(prefix="/api/users", tags=["users"])

#: Routes for other services only (not behind the gateway; a service token is required).
internal = APIRouter(prefix="/internal", tags=["internal"])

_RESERVED = set(DEMO_ACCOUNTS) | set(DEMO_CLIENTS) | {"client"}


@router.post("", response_model=UserPublic, status_code=status.HTTP_201_CREATED, summary="Register a customer",
             responses={409: {"description": "Username taken"}})
async def register(body: UserCreate, session: SessionDep, request: Request) -> UserAccount:
    if body.username in _RESERVED:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"username {body.username!r} is taken")
    password_hash = await hash_password_async(body.password)  # in the hashing pool, off the event loop
    user = UserAccount(username=body.username, email=body.email, full_name=body.full_name)
    session.add(user)
    session.add(Credential(username=body.username, password_hash=password_hash, roles="customer"))
    add_to_outbox(session, events.user_registered(body.username))
    try:
        await session.commit()
    except IntegrityError:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"username {body.username!r} is taken") from None
    publish_committed(request.app, session)
    return user


async def _own_profile(session, user) -> UserAccount:
    account = await session.get(UserAccount, user.sub)
    if account is None:
        # Demo accounts and OAuth clients have no registration: their profile starts empty.
        account = UserAccount(username=user.sub[:32])
        session.add(account)
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            account = await session.get(UserAccount, user.sub)
    return account


@router.get("/me", response_model=UserPublic, summary="My profile")
async def read_me(user: CurrentUser, session: SessionDep) -> UserAccount:
    return await _own_profile(session, user)


@router.patch("/me", response_model=UserPublic, summary="Update my profile")
async def update_me(body: UserUpdate, user: CurrentUser, session: SessionDep) -> UserAccount:
    account = await _own_profile(session, user)
    for field, value in body.model_dump(exclude_unset=True).items():
        setattr(account, field, value)
    await session.commit()
    await session.refresh(account)
    return account


@internal.post("/credentials/check", response_model=CredentialResult,
               summary="Check a registered customer's password (for the auth service)",
               responses={401: {"description": "Wrong username or password"},
                          403: {"description": "The caller is not the auth service"}})
async def check_credentials(body: CredentialCheck, session: SessionDep,
                            _: Annotated[Principal, Depends(service_caller("auth"))]) -> CredentialResult:
    roles = await credentials.check(session, body.username, body.password)
    if roles is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="wrong username or password")
    return CredentialResult(username=body.username, roles=roles)
