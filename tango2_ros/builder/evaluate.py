"""Evaluate one candidate model in its own process, so its peak memory is its own.

    python -m tango2_ros.builder.evaluate --model M.gguf [--adapter A.gguf] --eval eval.jsonl --metric contains
    python -m tango2_ros.builder.evaluate --model model.onnx --eval pairs.jsonl          (an encoder: retrieval@1)
    python -m tango2_ros.builder.evaluate --model ct.onnx --eval sets.npz --metric micro_f1   (a CT findings model)
    python -m tango2_ros.builder.evaluate --model BUNDLE --base M.gguf --eval sets.npz --metric vlm_micro_f1
                                                                                         (a chest-CT VLM bundle)
prints one JSON object: metric score (0..1), tokens/s, mean latency, peak resident memory, per-example outputs.
Language models decode greedily through the same runtime the llm_node serves with; encoders run in onnxruntime.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from tango2_ros.builder.dataset import load_examples
from tango2_ros.builder.evaluation import Evaluation, peak_resident_mb
from tango2_ros.core.runtime.llm import ChatTurn, LlmOptions, LlmRuntime


def score(metric: str, output: str, expected: str) -> float:
    if metric == "json_valid":
        try:
            json.loads(output)
            return 1.0
        except json.JSONDecodeError:
            return 0.0
    normal_output, normal_expected = _normal(output), _normal(expected)
    if metric == "exact_match":
        return float(normal_output == normal_expected)
    return float(normal_expected in normal_output)  # contains


JSON_LITERALS = ("true", "false", "null")


def cannot_become_json(prefix: str) -> bool:
    """Whether no continuation of `prefix` parses as JSON: it starts with a character no JSON value starts with, or
    is no literal (true, false, null) followed by spaces.
    The json_valid metric stops a generation there, with the same score (an untrained model's prose would
    otherwise run to max_tokens on every example)."""
    text = prefix.lstrip()
    if not text or text[0] in '{["-0123456789':
        return False
    return not any(literal.startswith(text) or (text.startswith(literal) and not text[len(literal):].strip())
                   for literal in JSON_LITERALS)


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".")


def run(model: Path, adapter: Path | None, eval_file: Path, metric: str, max_tokens: int, threads: int) -> Evaluation:
    """Greedy answers to each example; with `fact_check` under the example's JSON Schema (as served), scored by
    its teacher's check and grouped by the check's language."""
    from tango2_ros.builder.teachers import corrections
    from tango2_ros.core.runtime.schema import compile_schema

    runtime = LlmRuntime(str(model), LlmOptions(n_threads=threads, n_parallel=1, n_ctx_per_seq=2048,
                                                lora_path=str(adapter) if adapter else ""))
    try:
        runtime.warm_up()
        scores, outputs, tokens, seconds, groups = [], [], 0, 0.0, {}
        for example in load_examples(eval_file):
            prompt = runtime.chat_prompt([ChatTurn(m["role"], m["content"]) for m in example.prompt])
            checked = metric == "fact_check" and example.check is not None
            schema = example.check.get("schema") if checked else None
            started = time.monotonic()
            result = runtime.generate(prompt, max_tokens=max_tokens,
                                      schema=compile_schema(json.dumps(schema)) if schema else None,
                                      stop_when=cannot_become_json if metric == "json_valid" else None)
            seconds += time.monotonic() - started
            tokens += result.tokens
            outputs.append(result.text)
            if checked:
                scores.append(float(not corrections(result.text, example.check)))
                group = "/".join(str(example.check[k]) for k in ("task", "language") if k in example.check)
                groups.setdefault(group, []).append(scores[-1])
            else:
                scores.append(score(metric, result.text, example.answer))
    finally:
        runtime.close()
    peak_mb = peak_resident_mb()
    return Evaluation(sum(scores) / len(scores), tokens / seconds if seconds else 0.0, seconds / len(scores),
                      peak_mb, outputs, {group: sum(s) / len(s) for group, s in groups.items()})


def run_encoder(model: Path, eval_file: Path, threads: int) -> Evaluation:
    """retrieval@1: each query's nearest positive (cosine) must be its own, among all the set's positives."""
    import numpy as np
    import onnxruntime as ort
    from transformers import AutoTokenizer

    from tango2_ros.builder.dataset import load_pairs

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(str(model.parent))
    pairs = load_pairs(eval_file)

    def embed(texts: list[str]) -> tuple[np.ndarray, int, float]:
        encoded = tokenizer(texts, return_tensors="np", padding=True, truncation=True, max_length=256)
        started = time.monotonic()
        vectors = session.run(None, {"input_ids": encoded["input_ids"].astype(np.int64),
                                     "attention_mask": encoded["attention_mask"].astype(np.int64)})[0]
        return vectors, int(encoded["attention_mask"].sum()), time.monotonic() - started

    embed(["warm up"])
    queries, query_tokens, query_s = embed([p.query for p in pairs])
    positives, positive_tokens, positive_s = embed([p.positive for p in pairs])
    nearest = (queries @ positives.T).argmax(axis=1)
    hits = [int(found == index) for index, found in enumerate(nearest)]
    seconds = query_s + positive_s
    return Evaluation(sum(hits) / len(hits), (query_tokens + positive_tokens) / seconds, seconds / (2 * len(pairs)),
                      peak_resident_mb(), [pairs[i].positive for i in nearest])


def evaluate_in_subprocess(model: Path, adapter: Path | None, eval_file: Path, metric: str, max_tokens: int,
                           threads: int = 2, timeout_s: float = 1800, base: Path | None = None) -> Evaluation:
    """`base`: the language model a VLM bundle (`model`) runs on."""
    command = [sys.executable, "-m", "tango2_ros.builder.evaluate", "--model", str(model), "--eval", str(eval_file),
               "--metric", metric, "--max-tokens", str(max_tokens), "--threads", str(threads)]
    if adapter:
        command += ["--adapter", str(adapter)]
    if base:
        command += ["--base", str(base)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"evaluation of {model.name} failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
    return Evaluation(**json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--base", type=Path, help="the language model of a VLM bundle")
    parser.add_argument("--eval", type=Path, required=True)
    parser.add_argument("--metric", default="contains")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.metric == "micro_f1":
        from tango2_ros.builder.ct_findings import run_findings

        evaluation = run_findings(args.model, args.eval, args.threads)
    elif args.metric == "vlm_micro_f1":
        from tango2_ros.builder.ct_vlm import run_vlm

        evaluation = run_vlm(args.model, args.base, args.eval, args.threads)
    elif args.model.suffix == ".onnx":
        evaluation = run_encoder(args.model, args.eval, args.threads)
    else:
        evaluation = run(args.model, args.adapter, args.eval, args.metric, args.max_tokens, args.threads)
    print(json.dumps(evaluation.__dict__))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
