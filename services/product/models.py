"""Product request/response models (documents live in the ``products`` collection)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from services.common.types import Identifier, Text

Name = Annotated[Text, Field(min_length=1, max_length=120)]
Description = Annotated[Text, Field(max_length=2000)]
PriceCents = Annotated[int, Field(ge=0, le=100_000_000, description="Price in cents")]
Category = Annotated[str, Field(pattern=r"^[a-z0-9-]{1,32}$")]


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Identifier | None = Field(None, description="Omit to let the service choose one")
    name: Name
    description: Description = ""
    price_cents: PriceCents
    categories: Annotated[list[Category], Field(max_length=10)] = []


class ProductUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    price_cents: PriceCents | None = None
    categories: Annotated[list[Category], Field(max_length=10)] | None = None


class ProductPublic(BaseModel):
    id: str
    name: str
    description: str
    price_cents: int
    categories: list[str]


class ProductList(BaseModel):
    items: list[ProductPublic]
    total: int
    limit: int
    offset: int


def to_public(doc: dict) -> dict:
    """A stored document → the public shape."""
    return {"id": doc["_id"], "name": doc.get("name", ""), "description": doc.get("description", ""),
            "price_cents": int(doc.get("price_cents", 0)), "categories": list(doc.get("categories", []))}
