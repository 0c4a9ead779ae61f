"""Speculative decoding by prompt lookup: the drafts, and answers identical to plain decoding (real llama.cpp)."""
import json

import pytest

from tango2_ros.core.runtime.default_models import default_llm_path
from tango2_ros.core.runtime.llm import ChatTurn, LlmOptions, LlmRuntime
from tango2_ros.core.runtime.lookup import DraftLength, PromptLookup, StepCost
from tango2_ros.core.runtime.schema import compile_schema

COPYING = ("Repeat this list exactly, one item per line: anchor, buoy, compass, dinghy, ensign, fender, galley, "
           "hatch, inlet, jetty, keel, lanyard.")
REPORT_SCHEMA = {"type": "object", "properties": {
    "sentences": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 120}},
    "impression": {"type": "string", "maxLength": 160}}, "required": ["sentences", "impression"]}
REPORT = ("Present: pleural effusion (probability 0.91), lung nodule (probability 0.84). Absent: emphysema, "
          "cardiomegaly. Write one sentence per present finding, then the impression. Answer in JSON.")


def test_a_draft_is_what_followed_the_latest_earlier_occurrence_of_the_last_tokens():
    lookup = PromptLookup([1, 2, 3, 4, 5, 9, 2, 3, 7, 8], ngram_max=3, ngram_min=2)
    lookup.extend([1, 2, 3])
    assert lookup.draft(2) == [4, 5]  # the 3-gram 1 2 3 wins over the later 2-gram 2 3 (followed by 7)
    lookup.extend([9, 2, 3])
    assert lookup.draft(8) == [7, 8, 1, 2, 3, 9, 2, 3]  # 9 2 3 was last followed by 7 8 ...
    assert lookup.draft(0) == []


def test_no_draft_without_a_repeated_ngram():
    lookup = PromptLookup([5, 6, 7], ngram_min=2)
    assert lookup.draft(4) == []
    lookup.extend([6])  # a single repeated token is no match when n-grams start at two
    assert lookup.draft(4) == []
    with pytest.raises(ValueError, match="n-gram sizes"):
        PromptLookup([], ngram_max=1, ngram_min=2)


CPU = StepCost(fixed=1.0, per_token=0.45)  # about as on 2 cores: a 9-token step costs 5 one-token steps
GPU = StepCost(fixed=1.0, per_token=0.01)  # a step's time barely grows with its tokens


def test_drafts_are_as_long_as_pays_at_the_step_cost_and_the_agreement():
    assert DraftLength(GPU, most=8).tokens() == 8
    length = DraftLength(CPU, most=8)
    assert 0 < length.tokens() < 8  # at the prior agreement (0.9) a shorter draft pays best on a CPU
    misses, shorter = 0, [length.tokens()]
    while length.tokens() > 0:  # free text: the model keeps one token of each draft
        length.update(drafted=length.tokens(), kept=1)
        shorter.append(length.tokens())
        misses += 1
    assert misses < 10 and shorter == sorted(shorter, reverse=True)
    steps = 0
    while length.tokens() == 0:
        length.update(drafted=0, kept=0)
        steps += 1
    assert 0 < steps < 100  # no draft for a few steps, then it tries again
    copying = DraftLength(CPU, most=8)
    for _ in range(20):
        copying.update(drafted=8, kept=8)
    assert copying.agreement > 0.98 and copying.tokens() == 8


@pytest.fixture(scope="module")
def runtimes():
    plain = LlmRuntime(default_llm_path(), LlmOptions(n_parallel=4, n_ctx_per_seq=1024, draft_tokens=0))
    speculative = LlmRuntime(default_llm_path(), LlmOptions(n_parallel=4, n_ctx_per_seq=1024, draft_tokens=8))
    yield plain, speculative
    plain.close()
    speculative.close()


def _ask(runtime, text, **options):
    return runtime.generate(runtime.chat_prompt([ChatTurn("user", text)]), **options)


def test_an_answer_that_copies_its_prompt_takes_drafts_and_is_the_plain_answer(runtimes):
    plain, speculative = (_ask(r, COPYING, max_tokens=60) for r in runtimes)
    assert speculative.text == plain.text and speculative.tokens == plain.tokens
    assert speculative.accepted_tokens > 10 and plain.drafted_tokens == 0
    assert speculative.accepted_tokens <= speculative.drafted_tokens


def test_json_schema_answers_are_identical_and_valid(runtimes):
    schema = compile_schema(json.dumps(REPORT_SCHEMA))
    plain, speculative = (_ask(r, REPORT, max_tokens=200, schema=schema) for r in runtimes)
    assert speculative.text == plain.text
    assert not schema.validate(speculative.text)[1]
    assert speculative.drafted_tokens > 0


@pytest.mark.parametrize("max_tokens", [1, 7, 13])
def test_max_tokens_ends_the_answer_where_plain_decoding_ends_it(runtimes, max_tokens):
    plain, speculative = (_ask(r, COPYING, max_tokens=max_tokens) for r in runtimes)
    assert speculative.text == plain.text and speculative.tokens == plain.tokens == max_tokens
    assert speculative.finish_reason == plain.finish_reason == "length"


def test_parallel_sequences_each_get_the_answer_plain_decoding_gives_alone(runtimes):
    """Four at once in one batch, each with its own drafts and its own cache removals. Prompts with clear
    continuations: a batch sums attention in another order, so at a near-tie free text can flip a token even
    without drafts (seen with this model)."""
    plain, speculative = runtimes
    prompts = [plain.chat_prompt([ChatTurn("user", COPYING)]), plain.chat_prompt([ChatTurn("user", REPORT)]),
               "1, 2, 3, 4, 5, 6,", "A, B, C, D, E, F,"]
    alone = [plain.generate(prompt, max_tokens=24).text for prompt in prompts]
    handles = [speculative.start(prompt, max_tokens=24) for prompt in prompts]
    results = [handle.wait(120) for handle in handles]
    assert [r.text for r in results] == alone
    assert sum(r.accepted_tokens for r in results) > 10


def test_a_cancelled_speculative_request_keeps_its_text_and_the_engine_serves_on(runtimes):
    _, speculative = runtimes
    partial = []
    request = speculative.start(speculative.chat_prompt([ChatTurn("user", COPYING)]), max_tokens=200,
                                stream_interval=1, on_partial=lambda text, n: partial.append(n) or (
                                    n >= 5 and request.cancel()))
    result = request.wait(60)
    assert result.finish_reason == "cancelled" and result.tokens >= 5 and result.text
    again = _ask(speculative, COPYING, max_tokens=30)
    assert again.text == _ask(runtimes[0], COPYING, max_tokens=30).text
