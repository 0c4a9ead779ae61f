"""`tango2 models ...`: keys, signing, verification and the model registry from the command line.

    keygen  [--name N] [--trust]              new ed25519 signing key (models/keys/N.key + .pub)
    import  FILE --name --version --task ...   describe a model file as a bundle, sign it, publish it
    import-defaults                            key for this machine (if missing) + the embedded models and the
                                               trained releases of models/releases, signed
    export-release NAME@VERSION --tag T --rebuild CMD [--report DIR]
                                               keep a built version in models/releases (travels with the repo)
    sign    BUNDLE_DIR [--key K]               sign a bundle's manifest
    verify  BUNDLE_DIR | NAME[@VERSION]        check signature and files (a name is looked up in the cache)
    list    [--store S]                        models, versions and tags in a store (and what is cached)
    inspect NAME[@VERSION] [--store S]         a version's manifest
    pull    NAME[@VERSION] [--store S]         fetch and verify into the cache (works offline from the cache)
    push    BUNDLE_DIR | NAME@VERSION --store S  publish a bundle folder, or copy a version from --from
    status  [--manager /tango2/models]         what a running stack's model manager serves, with shadow scores
    shadow  NAME@SPEC --slot SLOT [--samples N] [--promote]
                                               a candidate in shadow beside a slot's serving model

Stores are folders, http(s):// URLs of a served store folder, or oci://host:port/prefix.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from tango2_ros import paths
from tango2_ros.cli import models_live
from tango2_ros.cli.output import ProgressBar, emit
from tango2_ros.core.artifacts.defaults import ensure_signing_key, import_defaults
from tango2_ros.core.artifacts.cache import ArtifactCache, VerificationError, verify_folder
from tango2_ros.core.artifacts.manifest import FORMATS, QUANTIZATIONS, TASKS, Manifest, ManifestError
from tango2_ros.core.artifacts.publishing import publish_bundle, sign_bundle, write_bundle
from tango2_ros.core.artifacts.releases import export_release, import_releases
from tango2_ros.core.artifacts.signing import SignatureError, TrustStore, generate_keypair
from tango2_ros.core.artifacts.stores import ArtifactError, open_store
from tango2_ros.errors import UserError


def register(commands) -> None:
    parser = commands.add_parser("models", help="model artifacts: keys, signing, registry", description=__doc__)
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    def add(name: str, handler, help_text: str, store: bool = False):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--json", action="store_true")
        command.add_argument("--trusted", type=Path, default=None, help="folder of trusted public keys")
        if store:
            command.add_argument("--store", default=None, help="store location (default: models/store)")
        command.set_defaults(handler=lambda args: _guarded(handler, args))
        return command

    keygen = add("keygen", _keygen, "create an ed25519 signing key")
    keygen.add_argument("--name", default="local", help="key file stem (default: local)")
    keygen.add_argument("--dir", type=Path, default=None, help="where to write it (default: models/keys)")
    keygen.add_argument("--trust", action="store_true", help="also trust the new public key on this machine")
    keygen.add_argument("--if-missing", action="store_true", help="do nothing when the key exists")

    imported = add("import", _import, "make a signed bundle from a model file and publish it", store=True)
    imported.add_argument("file", type=Path)
    imported.add_argument("--name", required=True)
    imported.add_argument("--version", required=True)
    imported.add_argument("--task", required=True, choices=TASKS)
    imported.add_argument("--quantization", required=True, choices=QUANTIZATIONS)
    imported.add_argument("--base-model", default="")
    imported.add_argument("--description", default="")
    imported.add_argument("--key", type=Path, default=None, help="signing key (default: models/keys/local.key)")

    add("import-defaults", _import_defaults, "sign and publish the embedded default models and the shipped "
        "releases (set-up runs this)", store=True)

    export = add("export-release", _export_release, "keep a published version in models/releases", store=True)
    export.add_argument("reference", help="NAME@VERSION (or a tag) in the store")
    export.add_argument("--tag", action="append", default=[], help="a tag set-up points at the release")
    export.add_argument("--rebuild", required=True, help="the command that rebuilds it from source")
    export.add_argument("--report", type=Path, default=None, help="the build's folder with report.md/report.png")
    export.add_argument("--releases", type=Path, default=None, help="where releases are kept (default: models/releases)")

    signer = add("sign", _sign, "sign a bundle folder's manifest")
    signer.add_argument("bundle", type=Path)
    signer.add_argument("--key", type=Path, default=None)

    verify = add("verify", _verify, "verify a bundle folder or a cached NAME@VERSION")
    verify.add_argument("target")

    add("list", _list, "list models in a store", store=True)

    inspect = add("inspect", _inspect, "show a version's manifest", store=True)
    inspect.add_argument("reference", help="NAME or NAME@VERSION (VERSION may be a tag; default: latest)")

    pull = add("pull", _pull, "fetch and verify a model into the cache", store=True)
    pull.add_argument("reference")
    pull.add_argument("--allow-unsigned", action="store_true", help="accept unsigned artifacts (files are still checked)")

    push = add("push", _push, "publish a bundle folder, or copy NAME@VERSION from --from", store=True)
    push.add_argument("source", help="bundle folder, or NAME@VERSION in the --from store")
    push.add_argument("--from", dest="source_store", default=None, help="store to copy NAME@VERSION from")
    push.add_argument("--tag", action="append", default=[], help="also point this tag at the version")

    models_live.register(sub)  # status and shadow: a running stack's model manager, over ROS


def _guarded(handler, args) -> int:
    """Artifact problems are the user's to fix: one line, exit code 2."""
    try:
        return handler(args)
    except (ArtifactError, ManifestError, SignatureError, OSError) as exc:
        raise UserError(str(exc)) from exc


def _trust(args) -> TrustStore:
    return TrustStore(args.trusted or paths.trusted_keys_dir())


def _store(args):
    return open_store(args.store or paths.default_store())


def _split(reference: str) -> tuple[str, str]:
    name, _, version = reference.partition("@")
    return name, version


def _keygen(args) -> int:
    folder = args.dir or paths.signing_key_path().parent
    private, public = folder / f"{args.name}.key", folder / f"{args.name}.pub"
    if private.exists() and args.if_missing:
        emit(args, {"private_key": str(private), "created": False}, f"{private} exists; kept")
        return 0
    identifier = generate_keypair(private, public)
    if args.trust:
        _trust(args).trust(public)
    emit(args, {"private_key": str(private), "public_key": str(public), "key_id": identifier, "created": True,
                "trusted": args.trust},
         f"key {identifier}: {private} (keep it secret), {public}" + (" (trusted here)" if args.trust else ""))
    return 0


def _import(args) -> int:
    if not args.file.is_file():
        raise UserError(f"{args.file} is not a file")
    fmt = next((f for f, suffixes in FORMATS.items() if args.file.name.endswith(suffixes)), None)
    if fmt is None:
        raise UserError(f"{args.file.name}: unknown model format (known: {', '.join(FORMATS)})")
    with tempfile.TemporaryDirectory(prefix="tango2-bundle-") as scratch:
        folder = Path(scratch)
        manifest = write_bundle(folder, [args.file], name=args.name, version=args.version, task=args.task, format=fmt,
                                quantization=args.quantization, base_model=args.base_model, description=args.description)
        key_id = sign_bundle(folder, args.key or paths.signing_key_path())
        record, new = publish_bundle(_store(args), folder, _trust(args))
    emit(args, {"reference": manifest.reference, "manifest_digest": record.manifest_digest, "key_id": key_id,
                "published": new},
         f"{manifest.reference} {'published' if new else 'already published'} ({record.manifest_digest[:19]}...)")
    return 0


def _import_defaults(args) -> int:
    trust = _trust(args)
    created = ensure_signing_key(paths.signing_key_path(), trust)
    store = _store(args)
    results = import_defaults(store, trust, paths.signing_key_path())
    results += import_releases(paths.releases_dir(), store, trust, paths.signing_key_path(),
                               warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    emit(args, {"key_created": created, "artifacts": [{"reference": r, "published": new} for r, new in results]},
         "\n".join(f"{r}: {'published' if new else 'already published'}" for r, new in results))
    return 0


def _export_release(args) -> int:
    name, spec = _split(args.reference)
    with tempfile.TemporaryDirectory(prefix="tango2-export-") as scratch:
        pulled = ArtifactCache(Path(scratch), _trust(args)).pull(_store(args), name, spec)
        target = export_release(pulled.folder, args.releases or paths.releases_dir(), args.tag, args.rebuild,
                                args.report)
    emit(args, {"reference": pulled.manifest.reference, "folder": str(target), "tags": args.tag},
         f"{pulled.manifest.reference} -> {target}")
    return 0


def _sign(args) -> int:
    identifier = sign_bundle(args.bundle, args.key or paths.signing_key_path())
    emit(args, {"bundle": str(args.bundle), "key_id": identifier}, f"signed {args.bundle} with key {identifier}")
    return 0


def _verify(args) -> int:
    folder = Path(args.target)
    if not folder.is_dir():
        name, version = _split(args.target)
        cache = ArtifactCache(paths.cache_dir(), _trust(args))
        versions = cache.cached_versions(name)
        version = version or (versions[-1] if versions else "")
        folder = cache.folder(name, version)
        if not version or not folder.is_dir():
            raise UserError(f"{args.target} is neither a bundle folder nor in the cache {paths.cache_dir()}")
    try:
        manifest, signer = verify_folder(folder, _trust(args))
    except VerificationError as exc:
        emit(args, {"ok": False, "error": str(exc)}, f"FAILED: {exc}")
        return 1
    emit(args, {"ok": True, "reference": manifest.reference, "key_id": signer.key_id, "key_name": signer.key_name},
         f"OK: {manifest.reference} signed by {signer.key_name} ({signer.key_id}), {len(manifest.files)} file(s) match")
    return 0


def _list(args) -> int:
    store = _store(args)
    cache = ArtifactCache(paths.cache_dir(), _trust(args))
    models = {name: {"versions": store.versions(name), "tags": store.tags(name), "cached": cache.cached_versions(name)}
              for name in store.names()}
    lines = [f"{name:<28} {', '.join(m['versions'])}"
             + (f"  tags: {', '.join(f'{t}={v}' for t, v in m['tags'].items())}" if m["tags"] else "")
             + (f"  cached: {', '.join(m['cached'])}" if m["cached"] else "")
             for name, m in models.items()]
    emit(args, {"store": store.location, "models": models}, "\n".join(lines) or f"no models in {store.location}")
    return 0


def _inspect(args) -> int:
    store = _store(args)
    name, spec = _split(args.reference)
    version = store.resolve(name, spec)
    record = store.record(name, version)
    manifest = Manifest.from_bytes(store.read_blob(record, record.manifest_digest))
    data = {"reference": manifest.reference, "manifest_digest": record.manifest_digest,
            "signed": bool(record.signature_digest), "manifest": json.loads(manifest.to_bytes())}
    human = [f"{manifest.reference}  {record.manifest_digest}", f"  task {manifest.task}, {manifest.format} "
             f"{manifest.quantization}, {manifest.kind}, {manifest.total_size / 2**20:.1f} MiB, "
             f"{'signed' if record.signature_digest else 'UNSIGNED'}, created {manifest.created}"]
    human += [f"  file {e.path} {e.size} bytes sha256 {e.sha256[:16]}..." for e in manifest.files]
    human += [f"  metric {k} = {v:g}" for k, v in sorted(manifest.metrics.items())]
    if manifest.device_profiles:
        human.append(f"  device profiles: {', '.join(manifest.device_profiles)}")
    emit(args, data, "\n".join(human))
    return 0


def _pull(args) -> int:
    cache = ArtifactCache(paths.cache_dir(), _trust(args), require_signature=not args.allow_unsigned)
    name, spec = _split(args.reference)
    bar = ProgressBar(f"pull {args.reference}")
    try:
        result = cache.pull(_store(args), name, spec, progress=bar.update)
    finally:
        bar.close()
    emit(args, {"reference": result.manifest.reference, "path": str(result.primary_path), "folder": str(result.folder),
                "from_cache": result.from_cache, "offline": result.offline, "bytes_downloaded": result.bytes_downloaded,
                "timings_s": result.timings},
         f"{result.manifest.reference} -> {result.primary_path}"
         + (" (from the cache; store unreachable)" if result.offline else " (cached)" if result.from_cache else ""))
    return 0


def _push(args) -> int:
    target = _store(args)
    trust = _trust(args)
    source = Path(args.source)
    if source.is_dir():
        record, new = publish_bundle(target, source, trust)
    else:
        if not args.source_store:
            raise UserError(f"{args.source} is not a folder; to copy a version between stores give --from STORE")
        name, spec = _split(args.source)
        with tempfile.TemporaryDirectory(prefix="tango2-push-") as scratch:
            cache = ArtifactCache(Path(scratch), trust)
            pulled = cache.pull(open_store(args.source_store), name, spec, progress=ProgressBar(f"fetch {args.source}").update)
            record, new = publish_bundle(target, pulled.folder, trust)
    for tag in args.tag:
        target.set_tag(record.name, tag, record.version)
    emit(args, {"reference": f"{record.name}@{record.version}", "store": target.location, "published": new,
                "manifest_digest": record.manifest_digest, "tags": args.tag},
         f"{record.name}@{record.version} {'pushed to' if new else 'already in'} {target.location}"
         + (f" (tags: {', '.join(args.tag)})" if args.tag else ""))
    return 0
