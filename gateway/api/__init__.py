"""The HTTP API (SPEC §8): FastAPI routers served by uvicorn inside the daemon's loop."""
