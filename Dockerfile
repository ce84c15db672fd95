# syntax=docker/dockerfile:1
# Build stage: dependencies first (cached until pyproject.toml changes), then the code.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"
COPY pyproject.toml README.md ./
# Install only the dependencies, from a throwaway copy of the package metadata.
RUN mkdir reviewbot && touch reviewbot/__init__.py \
    && pip install --no-cache-dir . \
    && pip uninstall --yes reviewbot \
    && rm -rf reviewbot build ./*.egg-info
COPY reviewbot ./reviewbot
COPY templates ./templates
COPY skills ./skills
# Editable install: templates/ and skills/ are found beside the package in /app.
RUN pip install --no-cache-dir --no-deps -e .

# Runtime stage: slim base, no compilers, non-root.
FROM python:3.11-slim
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    REVIEWBOT_DATA_DIR=/data
RUN useradd --create-home --uid 10001 reviewbot \
    && mkdir /data && chown reviewbot /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER 10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
CMD ["reviewbot", "serve", "--host", "0.0.0.0", "--port", "8000"]
