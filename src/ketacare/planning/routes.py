"""The planning routes as one router, the one the app mounts: the pages and the JSON API, each
in its own module."""

from __future__ import annotations

from fastapi import APIRouter

from ketacare.planning import api_routes, page_routes

# The modules' routers have no prefix, tags or dependencies: their routes join as they are (as
# app.py mounts each feature's router).
router = APIRouter()
for _module in (page_routes, api_routes):
    router.routes.extend(_module.router.routes)
