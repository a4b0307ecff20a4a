"""``python -m services.order``"""

from services.order.app import build_app
from services.common.app import serve

if __name__ == "__main__":
    serve("order", build_app)
