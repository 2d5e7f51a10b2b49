"""The controlled-substance ledger's routes as one router, the one the app mounts: the JSON API,
the pages, and the reports for inspection with the chain check, each in its own module."""

from __future__ import annotations

from fastapi import APIRouter

from ketacare.ledger import api_routes, page_routes, report_routes

# The modules' routers have no prefix, tags or dependencies: their routes join as they are (as
# app.py mounts each feature's router).
router = APIRouter()
for _module in (api_routes, page_routes, report_routes):
    router.routes.extend(_module.router.routes)
