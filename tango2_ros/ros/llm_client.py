"""Asking the llm_node: the one client every node that wants text from the language model uses.

One question, one `LlmAnswer`: the text and the model that wrote it, or the reason there is none (not reachable,
refused, no answer in time, failed, empty), so each caller applies its own fallback (templates, standard wording,
the supervisor's watchdog) the same way. The result race of rclpy's action server is handled by `goal_result`.
Calls block a worker thread, never the node's executor: `ask` runs one in its own thread and hands the answer to
a callback, `ask_and_wait` is for a thread that may block.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Callable

from rclpy.action import ActionClient

from tango2_msgs.action import Generate
from tango2_msgs.msg import ChatMessage
from tango2_ros.core.shadow import SHADOW_KEY, ShadowGate, ShadowScore, open_score
from tango2_ros.ros.actions import goal_result, threaded_wait

SERVER_WAIT_S = 2.0


@dataclass(frozen=True)
class Generation:
    """A whole Generate result, for clients that pass it on (the HTTP API): counts, finish reason, error code."""

    text: str = ""
    tokens: int = 0
    prompt_tokens: int = 0
    finish_reason: str = "error"
    model: str = ""
    error: str = ""
    error_code: str = ""


@dataclass(frozen=True)
class LlmAnswer:
    text: str = ""
    model: str = ""
    tokens: int = 0
    error: str = ""  # why there is no usable text; empty when there is

    @property
    def ok(self) -> bool:
        return not self.error


class LlmClient:
    def __init__(self, node, action_name: str, callback_group=None) -> None:
        self.action_name = action_name
        self._client = ActionClient(node, Generate, action_name, callback_group=callback_group)

    def ready(self) -> bool:
        return self._client.server_is_ready()

    def destroy(self) -> None:
        self._client.destroy()

    def ask(self, on_answer: Callable[[LlmAnswer], None], *, timeout_s: float, **question) -> None:
        """Ask in a thread of its own; `on_answer` is called there with the answer (or the reason for none)."""
        threading.Thread(target=lambda: on_answer(self.ask_and_wait(timeout_s=timeout_s, **question)),
                         name="llm-question", daemon=True).start()

    def answering(self, *, timeout_s: float, max_tokens: int) -> Callable[[str, dict], tuple[str, str, str]] | None:
        """asking(), or None while the action is not there, so the caller falls back at once."""
        return self.asking(timeout_s=timeout_s, max_tokens=max_tokens) if self.ready() else None

    def asking(self, *, timeout_s: float, max_tokens: int) -> Callable[[str, dict], tuple[str, str, str]]:
        """The model as the ROS-free domain code asks it: (prompt, JSON Schema) -> (text, model, error)
        (tango2_ros.sds.scene.Ask, tango2_ros.sdm.report.asked_draft); the error says why there is no text."""
        def ask(prompt: str, schema: dict) -> tuple[str, str, str]:
            answer = self.ask_and_wait(timeout_s=timeout_s, user=prompt, schema=schema, max_tokens=max_tokens)
            return answer.text, answer.model, answer.error

        return ask

    def ask_and_wait(self, *, timeout_s: float, user: str = "", prompt: str = "", schema: dict | None = None,
                     max_tokens: int = 256, temperature: float = 0.0) -> LlmAnswer:
        """`user`: one chat turn (the model's chat template applies); `prompt`: a raw completion."""
        goal = Generate.Goal(prompt=prompt, raw=bool(prompt), max_tokens=max_tokens, temperature=temperature,
                             json_schema=json.dumps(schema) if schema else "",
                             messages=[ChatMessage(role=ChatMessage.ROLE_USER, content=user)] if user else [])
        deadline = time.monotonic() + timeout_s
        if not self._client.wait_for_server(timeout_sec=min(SERVER_WAIT_S, timeout_s)):
            return LlmAnswer(error=f"the language model is not reachable ({self.action_name})")
        sent = self._client.send_goal_async(goal)
        if not threaded_wait(sent, max(0.0, deadline - time.monotonic())):
            return LlmAnswer(error=f"the language model did not take the request within {timeout_s:.0f} s")
        handle = sent.result()
        if handle is None or not handle.accepted:
            return LlmAnswer(error="the language model refused the request")
        response = goal_result(handle, threaded_wait, max(0.0, deadline - time.monotonic()))
        if response is None:
            handle.cancel_goal_async()
            return LlmAnswer(error=f"the language model did not answer within {timeout_s:.0f} s")
        result = response.result
        if result.finish_reason not in (Generate.Result.FINISH_STOP, Generate.Result.FINISH_LENGTH):
            return LlmAnswer(model=result.model, error=f"the language model failed ({result.error or result.finish_reason})")
        if not result.text.strip():
            return LlmAnswer(model=result.model, error=f"the language model answered nothing ({result.error or 'empty'})")
        return LlmAnswer(result.text, result.model, result.tokens)

    def generate(self, turns: list[tuple[str, str]], *, timeout_s: float, schema: dict | None = None,
                 max_tokens: int = 0, temperature: float = 0.0,
                 on_text: Callable[[str], bool] | None = None, gone: Callable[[], bool] = lambda: False) -> Generation:
        """A chat, streamed: `on_text(text so far)` is called on each feedback and cancels the goal by returning
        False (a stop sequence, a client that went away); `gone()` is asked every 0.2 s while waiting."""
        goal = Generate.Goal(messages=[ChatMessage(role=role, content=content) for role, content in turns],
                             json_schema=json.dumps(schema) if schema is not None else "", max_tokens=max_tokens,
                             temperature=temperature)
        deadline = time.monotonic() + timeout_s
        if not self._client.wait_for_server(timeout_sec=min(SERVER_WAIT_S, timeout_s)):
            return Generation(error=f"the language model is not reachable ({self.action_name})",
                              error_code=Generate.Result.ERROR_NO_MODEL)
        state: dict = {"handle": None, "stopped": False}

        def stop() -> None:
            if not state["stopped"] and state["handle"] is not None:
                state["stopped"] = True
                state["handle"].cancel_goal_async()

        def feedback(message) -> None:
            if on_text is not None and not on_text(message.feedback.partial_text):
                stop()

        sent = self._client.send_goal_async(goal, feedback_callback=feedback)
        if not threaded_wait(sent, max(0.0, deadline - time.monotonic())) or sent.result() is None \
                or not sent.result().accepted:
            return Generation(error="the language model did not take the request", error_code=Generate.Result.ERROR_BUSY)
        state["handle"] = sent.result()
        while True:
            response = goal_result(state["handle"], threaded_wait, min(0.2, max(0.0, deadline - time.monotonic())))
            if response is not None:
                break
            if gone():
                stop()
            if time.monotonic() > deadline:
                stop()
                return Generation(error=f"no answer within {timeout_s:.0f} s", error_code=Generate.Result.ERROR_FAILED)
        r = response.result
        return Generation(r.text, r.tokens, r.prompt_tokens, r.finish_reason, r.model, r.error, r.error_code)


class ShadowQuestions:
    """A candidate model in shadow asked what the serving model was asked, after it and never beside it: one
    question at a time, and the one still being answered when the next input arrives is cancelled (`preempt`), so
    the candidate uses the time the serving model leaves idle. A question that cannot be asked now (still busy,
    candidate unreachable) is answered at once with the reason; `on_answer(answer, tag)` runs in a thread."""

    def __init__(self, client: LlmClient, on_answer: Callable[[LlmAnswer, object], None], *, timeout_s: float,
                 max_tokens: int) -> None:
        self.client, self.on_answer, self.timeout_s, self.max_tokens = client, on_answer, timeout_s, max_tokens
        self._busy = threading.Lock()
        self._preempted = threading.Event()

    def preempt(self) -> None:
        if self._busy.locked():
            self._preempted.set()

    def ask(self, user: str, schema: dict, tag) -> None:
        if not self.client.ready() or not self._busy.acquire(blocking=False):
            why = "not reachable" if not self.client.ready() else "still answering an earlier question"
            self.on_answer(LlmAnswer(error=f"{self.client.action_name}: {why}"), tag)
            return
        self._preempted.clear()
        threading.Thread(target=self._answer, args=(user, schema, tag), name="shadow-question", daemon=True).start()

    def _answer(self, user: str, schema: dict, tag) -> None:
        try:
            done = self.client.generate([(ChatMessage.ROLE_USER, user)], timeout_s=self.timeout_s, schema=schema,
                                        max_tokens=self.max_tokens, gone=self._preempted.is_set)
        finally:
            self._busy.release()
        if self._preempted.is_set():
            answer = LlmAnswer(model=done.model, error="preempted: the next input came first")
        elif done.finish_reason not in (Generate.Result.FINISH_STOP, Generate.Result.FINISH_LENGTH) or not done.text:
            answer = LlmAnswer(model=done.model, error=f"the candidate failed ({done.error or done.finish_reason})")
        else:
            answer = LlmAnswer(done.text, done.model, done.tokens)
        self.on_answer(answer, tag)


class ShadowCandidate:
    """A node's candidate model in shadow: asked what the serving model was asked, after it (`ShadowQuestions`),
    each answer judged by the domain's `judge(score, context, text, latency_s, error)`, settled by the node's
    `shadow.*` gate (read live: `tango2 models shadow --samples` sets it) and reported as `shadow` on /diagnostics.
    A candidate's score is final once promoted or retired; its name is the action's until it answers with its own."""

    def __init__(self, node, action_name: str, judge: Callable[..., None], *, timeout_s: float,
                 max_tokens: int) -> None:
        self.node, self.judge, self.model = node, judge, action_name
        self.scores: dict[str, ShadowScore] = {}
        self.questions = ShadowQuestions(LlmClient(node, action_name), self._on_answer, timeout_s=timeout_s,
                                         max_tokens=max_tokens)

    def preempt(self) -> None:
        """The serving model goes first: a question still being answered is cancelled."""
        self.questions.preempt()

    def ask(self, user: str, schema: dict, context) -> None:
        self.questions.ask(user, schema, (context, time.monotonic()))

    def destroy(self) -> None:
        self.questions.client.destroy()

    def _on_answer(self, answer: LlmAnswer, asked) -> None:
        context, asked_s = asked
        self.model = answer.model or self.model
        score = open_score(self.scores, self.model)
        if score is None:
            return
        self.judge(score, context, answer.text, time.monotonic() - asked_s, answer.error)
        score.settle(self.node.settings(ShadowGate, "shadow."))
        self.node.set_values(**{SHADOW_KEY: json.dumps(score.as_dict())})
