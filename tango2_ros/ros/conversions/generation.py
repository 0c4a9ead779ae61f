"""The Generate action's results: a finished generation, and why one was refused as the action's error codes
(whose it is to fix, and whether to try again; the HTTP endpoint turns them into status codes)."""
from __future__ import annotations

from tango2_msgs.action import Generate
from tango2_ros.core.runtime.base import NoModelError
from tango2_ros.core.runtime.llama_engine import FINISH_ERROR, BusyError, RequestError
from tango2_ros.core.runtime.llm import Answer
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


def answer_to_ros(answer: Answer) -> Generate.Result:
    return Generate.Result(text=answer.text, tokens=answer.tokens, prompt_tokens=answer.prompt_tokens,
                           finish_reason=answer.finish_reason, model=answer.model, tokens_per_s=answer.tokens_per_s,
                           error=answer.error,
                           error_code=Generate.Result.ERROR_FAILED if answer.finish_reason == FINISH_ERROR else "")


def refusal_to_ros(exc: Exception, model: str) -> Generate.Result:
    return Generate.Result(finish_reason=FINISH_ERROR, error=str(exc), error_code=refusal_code(exc), model=model)
