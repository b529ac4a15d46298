"""ASGI entry point for multi-process servers: ``uvicorn enclave.asgi:app``."""

from enclave.app import create_app

app = create_app()
