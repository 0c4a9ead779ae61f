"""Why a generation was refused, as the Generate action's error codes: whose it is to fix, and whether to try
again (the HTTP endpoint turns them into status codes)."""
from __future__ import annotations

from tango2_msgs.action import Generate
from tango2_ros.core.runtime.base import NoModelError
from tango2_ros.core.runtime.llama_engine import BusyError, RequestError
from tango2_ros.core.runtime.schema import SchemaError


def refusal_code(exc: Exception) -> str:
    """The Generate.Result error code of an exception that refused a goal."""
    if isinstance(exc, (SchemaError, RequestError)):
        return Generate.Result.ERROR_BAD_REQUEST
    if isinstance(exc, NoModelError):
        return Generate.Result.ERROR_NO_MODEL
    if isinstance(exc, BusyError):
        return Generate.Result.ERROR_BUSY
    return Generate.Result.ERROR_FAILED
