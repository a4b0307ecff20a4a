# One image for every CloudMart service; the manifest picks the service with
# `command: ["python", "-m", "services.<name>"]`. Multi-arch: the base image and every wheel exist
# for linux/amd64 and linux/arm64, so `docker buildx build --platform linux/amd64,linux/arm64 .`
# works as well as the plain `docker build` that `cloudmart up --target kind` runs.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY cluster/kind/image-requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --requirement /tmp/requirements.txt

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="cloudmart" \
      org.opencontainers.image.description="CloudMart course microservices (python -m services.<name>)" \
      org.opencontainers.image.source="https://github.com/cloudmart-course/cloudmart" \
      org.opencontainers.image.licenses="Apache-2.0"
# Containers listen on every interface (the services default to 127.0.0.1 for the local target).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    CLOUDMART_STATE_DIR=/var/lib/cloudmart
RUN groupadd --system --gid 10001 cloudmart \
 && useradd --system --uid 10001 --gid cloudmart --home-dir /app --shell /usr/sbin/nologin cloudmart \
 && install -d -o cloudmart -g cloudmart /var/lib/cloudmart
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root services /app/services
USER 10001:10001
EXPOSE 8080
# No default service: the Deployment's command chooses one.
CMD ["python", "-c", "print('choose a service: python -m services.<name>')"]
