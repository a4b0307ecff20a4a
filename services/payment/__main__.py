"""``python -m services.payment``"""

from services.payment.app import build_app
from services.common.app import serve

if __name__ == "__main__":
    serve("payment", build_app)
