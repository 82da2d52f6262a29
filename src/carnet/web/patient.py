"""The patient portal (``/patient/…``): placeholder while the pages are built."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/patient", include_in_schema=False)
