"""``sweepflow serve``: a live HTTP scoring service that follows a registry alias.

``live`` holds the served version and follows the alias; ``app`` is the FastAPI service;
``cli`` is the command (``serve``) and the uvicorn wiring.
"""
