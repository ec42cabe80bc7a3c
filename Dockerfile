# One image for every role: `opscore api`, `opscore worker`, `opscore db upgrade`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH="/opt/venv/bin:$PATH"

RUN pip install --no-cache-dir uv

WORKDIR /app
COPY pyproject.toml uv.lock alembic.ini ./
COPY agentkit ./agentkit
COPY ops-core ./ops-core
COPY src ./src
RUN uv sync --frozen --no-dev

RUN useradd --create-home --uid 10001 opscore
USER opscore

EXPOSE 8000
CMD ["opscore", "api", "--host", "0.0.0.0", "--port", "8000"]
