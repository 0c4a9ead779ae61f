"""The build report: a Markdown table of every candidate and a plot of quality versus size versus speed."""
from __future__ import annotations

from pathlib import Path

from tango2_ros.builder.pipeline import MB, BuildResult, speed_unit


def _base(result: BuildResult) -> str:
    base = result.base
    if base.adapter:
        return (f"`{base.reference}` with the adapter in service `{base.adapter_reference}`, continued (the row "
                f"`base` is the model in service)")
    return f"`{result.recipe.base}`"


def write_report(result: BuildResult) -> tuple[Path, Path]:
    recipe = result.recipe
    plot = result.work_dir / "report.png"
    _plot(result, plot)
    lines = [
        f"# Build report: {recipe.name} {recipe.version}",
        "",
        f"- recipe: `{recipe.source}`",
        f"- base: {_base(result)}; data fingerprint `{result.data_fingerprint[:16]}...`",
        f"- evaluation: {recipe.metric} on {_eval_set(recipe)}; speed and memory measured on the build machine",
    ]
    if result.losses:
        lines.append(f"- {'training' if recipe.trained_from_scratch else 'LoRA fine-tune'}: {len(result.losses)} "
                     f"{'epochs' if recipe.task == 'classifier' else 'steps'}, loss {result.losses[0]:.3f} -> "
                     f"{result.losses[-1]:.3f}, {result.finetune_s:.0f} s")
    lines += ["", f"| candidate | version | kind | ships (MB) | on device (MB) | {recipe.metric} | {speed_unit(recipe)} | "
              "peak memory (MB) | gates | device profiles |", "|---|---|---|---|---|---|---|---|---|---|"]
    for candidate in result.evaluated:
        e = candidate.evaluation
        gate = "baseline" if candidate not in result.candidates else ("; ".join(candidate.failures) or "pass")
        lines.append(
            f"| {candidate.label} | {candidate.version or '-'} | {candidate.kind} | {candidate.ship_bytes / MB:.1f} | "
            f"{candidate.device_bytes / MB:.1f} | {e.metric:.2f} | {e.tokens_per_s:.1f} | {e.peak_memory_mb:.0f} | "
            f"{gate} | {', '.join(candidate.profiles) or '-'} |"
        )
    groups = sorted({g for c in result.evaluated for g in c.evaluation.groups})
    if groups:  # a teacher's metric per task and language
        lines += ["", f"| candidate | {' | '.join(groups)} |", "|---|" + "---|" * len(groups)]
        lines += [f"| {c.label} | " + " | ".join(f"{c.evaluation.groups.get(g, float('nan')):.2f}" for g in groups) + " |"
                  for c in result.evaluated]
    lines += ["", "Tags: " + (", ".join(f"`{t}` -> {v}" for t, v in result.tags.items()) or "none"), "",
              f"![quality versus size and speed]({plot.name})", ""]
    markdown = result.work_dir / "report.md"
    markdown.write_text("\n".join(lines))
    return markdown, plot


def _eval_set(recipe) -> str:
    if recipe.eval is None:
        return f"{recipe.extra['phantoms']['eval']} held-out phantoms" + (
            " (per-label thresholds from the tuning set)" if recipe.task == "classifier" else
            " (the findings model's evaluation seeds), the findings the generated text asserts")
    return f"`{recipe.eval.name}`, greedy, max {recipe.max_tokens} tokens"


def _plot(result: BuildResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    candidates = result.evaluated
    sizes = [c.device_bytes / MB for c in candidates]
    quality = [c.evaluation.metric for c in candidates]
    speed = [c.evaluation.tokens_per_s for c in candidates]
    points = axes.scatter(sizes, quality, c=speed, cmap="viridis", s=120, edgecolors="black")
    for candidate, x, y in zip(candidates, sizes, quality):
        axes.annotate(candidate.label, (x, y), textcoords="offset points", xytext=(6, 6))
    axes.set_xlabel("size on the device (MB)")
    axes.set_ylabel(result.recipe.metric)
    axes.set_ylim(-0.05, 1.05)
    axes.set_title(f"{result.recipe.name} {result.recipe.version}: quality vs size vs speed")
    figure.colorbar(points, label=f"{speed_unit(result.recipe)} (build machine)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
