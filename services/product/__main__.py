"""``python -m services.product``"""

from services.product.app import build_app
from services.common.app import serve

if __name__ == "__main__":
    serve("product", build_app)
