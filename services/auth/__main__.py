"""``python -m services.auth``"""

from services.auth.app import build_app
from services.common.app import serve

if __name__ == "__main__":
    serve("auth", build_app)
