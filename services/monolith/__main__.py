"""``python -m services.monolith``"""

from services.common.app import run
from services.common.settings import Settings
from services.monolith.app import build_app

if __name__ == "__main__":
    settings = Settings.from_env("monolith")
    run(build_app(settings), settings)
