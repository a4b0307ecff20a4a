"""``python -m services.monolith``"""

from services.monolith.app import build_app
from services.common.app import serve

if __name__ == "__main__":
    serve("monolith", build_app)
