"""``python -m services.notification``"""

from services.notification.app import build_app
from services.common.app import serve

if __name__ == "__main__":
    serve("notification", build_app)
