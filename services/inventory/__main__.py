"""``python -m services.inventory``"""

from services.inventory.app import build_app
from services.common.app import run
from services.common.settings import Settings

if __name__ == "__main__":
    settings = Settings.from_env("inventory")
    run(build_app(settings), settings)
