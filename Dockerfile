# sdbot: one process running every configured chat adapter around one shared core.
# Keep in step with pyproject.toml (Python version, packages, extras).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin sdbot

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
COPY locales ./locales
# The bedrock extra brings botocore for AWS request signing; the other backends need nothing more.
RUN pip install ".[bedrock]" && rm -rf /src

USER sdbot
WORKDIR /home/sdbot
ENV SDBOT_DB=/home/sdbot/data/sdbot.db
RUN mkdir -p /home/sdbot/data
VOLUME ["/home/sdbot/data"]

# Configuration comes from the environment (docker run --env-file .env).
CMD ["sdbot", "run"]
