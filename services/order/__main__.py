"""``python -m services.order``"""

from services.order.app import build_app
from services.common.app import run
from services.common.settings import Settings

if __name__ == "__main__":
    settings = Settings.from_env("order")
    run(build_app(settings), settings)
