"""Demo data for a local CloudMart: accounts and the starting catalog (local use only)."""

from __future__ import annotations

#: Demo accounts: username → roles. Their password is CLOUDMART_DEMO_PASSWORD (default "cloudmart").
DEMO_ACCOUNTS: dict[str, list[str]] = {"alice": ["customer"], "bob": ["customer"], "admin": ["admin"]}

#: OAuth clients for machine use (client_credentials): client id → roles; secret = demo password.
DEMO_CLIENTS: dict[str, list[str]] = {"loadgen": ["customer"]}

#: The starting catalog (ids from Google's Online Boutique), with initial stock for inventory.
CATALOG: list[dict] = [
    {"id": "OLJCESPC7Z", "name": "Sunglasses", "description": "Add a modern touch to your outfits.",
     "price_cents": 1999, "categories": ["accessories"], "initial_stock": 500},
    {"id": "66VCHSJNUP", "name": "Tank Top", "description": "Perfectly cropped cotton tank.",
     "price_cents": 1899, "categories": ["clothing", "tops"], "initial_stock": 500},
    {"id": "1YMWWN1N4O", "name": "Watch", "description": "A fine timepiece.",
     "price_cents": 10999, "categories": ["accessories"], "initial_stock": 200},
    {"id": "L9ECAV7KIM", "name": "Loafers", "description": "A neat addition to your summer wardrobe.",
     "price_cents": 8999, "categories": ["footwear"], "initial_stock": 300},
    {"id": "2ZYFJ3GM2N", "name": "Hairdryer", "description": "A powerful 2000 W hairdryer.",
     "price_cents": 2499, "categories": ["hair", "beauty"], "initial_stock": 300},
    {"id": "0PUK6V6EV0", "name": "Candle Holder", "description": "A rustic wooden candle holder.",
     "price_cents": 1895, "categories": ["decor", "home"], "initial_stock": 400},
    {"id": "LS4PSXUNUM", "name": "Salt & Pepper Shakers", "description": "Add some flavor to your kitchen.",
     "price_cents": 1849, "categories": ["kitchen"], "initial_stock": 400},
    {"id": "9SIQT8TOJO", "name": "Bamboo Glass Jar", "description": "An airtight jar for dry food.",
     "price_cents": 549, "categories": ["kitchen"], "initial_stock": 1000},
    {"id": "6E92ZMYYFZ", "name": "Mug", "description": "A simple mug with a mustard interior.",
     "price_cents": 899, "categories": ["kitchen"], "initial_stock": 1000},
    {"id": "LIMITED001", "name": "Limited Edition Print", "description": "Only three were made.",
     "price_cents": 4900, "categories": ["decor"], "initial_stock": 3},
]
