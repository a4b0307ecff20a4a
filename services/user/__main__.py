"""``python -m services.user``"""

from services.user.app import build_app
from services.common.app import run
from services.common.settings import Settings

if __name__ == "__main__":
    settings = Settings.from_env("user")
    run(build_app(settings), settings)
