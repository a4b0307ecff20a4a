"""``python -m services.inventory``"""

from services.inventory.app import build_app
from services.common.app import serve

if __name__ == "__main__":
    serve("inventory", build_app)
