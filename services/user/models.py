"""User tables and request/response models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Base, utcnow
from services.common.types import Text

Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.-]{3,32}$")]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s\x00-\x1f]{1,64}@[^@\s\x00-\x1f]{1,190}\.[A-Za-z]{2,24}$")]


class UserAccount(Base):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(255), default=None)
    full_name: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Credential(Base):
    """A registered customer's password hash and roles: the system of record for logins.

    Roles are set here, never taken from a request or an event: registration makes a customer."""

    __tablename__ = "credentials"

    username: Mapped[str] = mapped_column(String(32), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    roles: Mapped[str] = mapped_column(String(200), default="customer")  # comma separated
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CredentialCheck(BaseModel):
    """What auth sends to check a password (internal route)."""

    model_config = ConfigDict(extra="forbid")

    username: Annotated[Text, Field(min_length=1, max_length=64)]
    password: Annotated[Text, Field(min_length=1, max_length=256)]


class CredentialResult(BaseModel):
    username: str
    roles: list[str]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username = Field(description="3–32 of a-z 0-9 _ . -")
    password: Annotated[Text, Field(min_length=8, max_length=128)]
    email: Email | None = None
    full_name: Annotated[Text, Field(min_length=1, max_length=128)] | None = None


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
    full_name: Annotated[Text, Field(min_length=1, max_length=128)] | None = None


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    email: str | None
    full_name: str | None
    created_at: datetime
    updated_at: datetime
