"""FastAPI model server (the paper's architecture c), served by uvicorn."""
