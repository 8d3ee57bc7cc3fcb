"""`python -m api`: serve the API with uvicorn on API_HOST:API_PORT."""

import uvicorn

from api.app import create_app
from datatracker.logs import configure_logging
from datatracker.settings import load_settings


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # keep our log format
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
