"""`tango2 learn RECIPE.yaml` (also `tango2 build`): one command from a domain's teacher or data to signed,
evaluated, device-sized model versions. An interrupted run resumes from its work folder without training again."""
from __future__ import annotations

import sys
from pathlib import Path

from tango2_ros import paths
from tango2_ros.cli.output import ProgressBar, emit
from tango2_ros.errors import UserError


def register(commands) -> None:
    parser = commands.add_parser("learn", aliases=["build"], description=__doc__,
                                 help="build model versions from a recipe (teach, fine-tune, quantise, evaluate, "
                                      "gate, sign, publish)")
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--store", default=None, help="registry to publish to (default: models/store)")
    parser.add_argument("--key", type=Path, default=None, help="signing key (default: models/keys/local.key)")
    parser.add_argument("--out", type=Path, default=None, help="work folder for files and the report "
                                                                "(default: build/models/NAME-VERSION)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the fine-tune runs")
    parser.add_argument("--cluster", default="", help="run the fine-tune's finetune.workers as Ray actors on this "
                                                       "cluster: local:N, auto or ray://HOST:PORT")
    parser.add_argument("--no-publish", action="store_true", help="build and evaluate only")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from tango2_ros.builder.pipeline import build
    from tango2_ros.builder.recipe import load_recipe
    from tango2_ros.builder.report import write_report
    from tango2_ros.core.artifacts.cache import ArtifactCache, VerificationError
    from tango2_ros.core.artifacts.manifest import ManifestError
    from tango2_ros.core.artifacts.signing import SignatureError, TrustStore
    from tango2_ros.core.artifacts.stores import ArtifactError, open_store

    recipe = load_recipe(args.recipe)
    key = args.key or paths.signing_key_path()
    if not args.no_publish and not key.is_file():
        raise UserError(f"signing key {key} not found (tango2 models keygen --trust, or --key)")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available here")
    trust = TrustStore(paths.trusted_keys_dir())
    store = open_store(args.store or paths.default_store())
    work_dir = args.out or paths.share_dir() / "build" / "models" / f"{recipe.name}-{recipe.version}"
    bar = ProgressBar("fine-tune", unit="steps")

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        result = build(recipe, store, ArtifactCache(paths.cache_dir(), trust), trust, key, work_dir, say,
                       train_progress=lambda step, total, _loss: bar.update(step, total), device=args.device,
                       publish=not args.no_publish, cluster=args.cluster)
    except (ArtifactError, ManifestError, SignatureError, VerificationError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from exc
    finally:
        bar.close()
    markdown, plot = write_report(result)
    data = {
        "name": recipe.name, "report": str(markdown), "plot": str(plot), "tags": result.tags,
        "losses": result.losses, "data_fingerprint": result.data_fingerprint,
        "candidates": [{"label": c.label, "version": c.version, "kind": c.kind, "ship_mb": c.ship_bytes / 1e6,
                        "device_mb": c.device_bytes / 1e6, "failures": c.failures, "profiles": c.profiles,
                        **c.evaluation.__dict__} for c in result.evaluated],
    }
    published = [c.version for c in result.candidates if c.version]
    emit(args, data, f"published {', '.join(published) or 'nothing'}; tags "
                     f"{', '.join(f'{t}={v}' for t, v in result.tags.items()) or 'none'}; report {markdown}")
    return 0 if published or args.no_publish else 1
