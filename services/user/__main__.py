"""``python -m services.user``"""

from services.user.app import build_app
from services.common.app import serve

if __name__ == "__main__":
    serve("user", build_app)
