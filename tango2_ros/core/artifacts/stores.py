"""Artifact stores: where signed model bundles are published and pulled from.

Three transports, one model: a store maps `name@version` to a manifest digest and a signature digest, and
serves blobs by sha256. Published versions are immutable (publishing different bytes under an existing
version is refused); tags (`best-edge-cpu-2c-4gb`, ...) are movable names for versions.

- `LocalStore` - a folder (`models/store`, the embedded default): `blobs/sha256/<hex>`,
  `refs/<name>/<version>.json`, `tags/<name>.json`, and `index.json` listing everything.
- `HttpStore` - the same folder served by any static web server (read-only; resumable pulls with Range).
- `OciStore` - an OCI distribution registry (`oci://host:port/prefix`), one repository per model and one tag
  per version; the manifest is the OCI config blob, the signature and files are layers. Pushed with `oras`.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import requests

from tango2_ros.core.artifacts.manifest import SEMVER_PATTERN, NAME_PATTERN, is_release, semver_key

MANIFEST_MEDIA_TYPE = "application/vnd.tango2.model.manifest.v1+json"
SIGNATURE_MEDIA_TYPE = "application/vnd.tango2.model.signature.v1+json"
FILE_MEDIA_TYPE = "application/vnd.tango2.model.file"
TITLE_ANNOTATION = "org.opencontainers.image.title"
OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
NETWORK_TIMEOUT_S = 10.0
CHUNK_BYTES = 64 << 10  # small enough that an interrupted download keeps nearly all it received

Progress = Callable[[int], None]  # called with the number of bytes just written


class ArtifactError(RuntimeError):
    """An artifact cannot be published or pulled; the message says why."""


class ArtifactNotFound(ArtifactError):
    """No such model, version or tag in the store."""


class StoreUnavailable(ArtifactError):
    """The store cannot be reached (network down, server stopped): a pull may fall back to the cache."""


class DiskFull(ArtifactError):
    """Writing ran out of space; partial files were removed."""


@dataclass(frozen=True)
class ArtifactRecord:
    """What a store holds for one version: the digests of its manifest and signature (empty if unsigned)."""

    name: str
    version: str
    manifest_digest: str
    signature_digest: str


class Store(ABC):
    location: str
    writable = True

    @abstractmethod
    def names(self) -> list[str]:
        """Model names in the store."""

    @abstractmethod
    def versions(self, name: str) -> list[str]:
        """Versions of a model, oldest first."""

    @abstractmethod
    def tags(self, name: str) -> dict[str, str]:
        """Tag -> version."""

    @abstractmethod
    def record(self, name: str, version: str) -> ArtifactRecord:
        """The digests of one version; ArtifactNotFound if absent."""

    @abstractmethod
    def read_blob(self, record: ArtifactRecord, digest: str) -> bytes:
        """A small blob (manifest, signature), verified against its digest."""

    @abstractmethod
    def download_blob(self, record: ArtifactRecord, digest: str, destination: Path, progress: Progress | None) -> None:
        """Append the blob's bytes to `destination` from its current size (a partial download resumes)."""

    @abstractmethod
    def publish(self, manifest_bytes: bytes, signature_bytes: bytes | None, folder: Path, name: str,
                version: str, files: list[tuple[str, str]]) -> ArtifactRecord:
        """Store one version (files: (relative path, sha256)); refuses to change an existing version."""

    @abstractmethod
    def set_tag(self, name: str, tag: str, version: str) -> None:
        """Point a tag at a version."""

    def resolve(self, name: str, spec: str = "") -> str:
        """A version from a spec: empty or 'latest' = the highest release (highest pre-release if none), else a
        tag, else an exact version."""
        versions = self.versions(name)
        if not versions:
            raise ArtifactNotFound(f"model '{name}' is not in {self.location}")
        if spec in ("", "latest"):
            releases = [v for v in versions if is_release(v)]
            return max(releases or versions, key=semver_key)
        if spec in versions:
            return spec
        tags = self.tags(name)
        if spec in tags:
            return tags[spec]
        raise ArtifactNotFound(f"{name}@{spec} is not in {self.location} (versions: {', '.join(versions)})")


def open_store(location: str) -> Store:
    """A store from a location: a folder path, `file://`, `http(s)://` or `oci://host[:port]/prefix`."""
    if location.startswith(("http://", "https://")):
        return HttpStore(location)
    if location.startswith("oci://"):
        return OciStore(location)
    if location.startswith("file://"):
        location = urlparse(location).path
    return LocalStore(Path(location))


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hex(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256" or len(value) != 64 or not all(c in "0123456789abcdef" for c in value):
        raise ArtifactError(f"malformed digest {digest!r}")
    return value


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ArtifactNotFound(f"invalid model name {name!r}")


def _check_blob(data: bytes, digest: str, what: str) -> bytes:
    if sha256_digest(data) != digest:
        raise ArtifactError(f"{what} does not match its digest {digest[:19]}... (corrupted in the store)")
    return data


def write_chunks(chunks, destination: Path, progress: Progress | None) -> None:
    """Append chunks to a file; a full disk raises DiskFull (the caller removes what it wrote)."""
    try:
        with open(destination, "ab") as handle:
            for chunk in chunks:
                if chunk:
                    handle.write(chunk)
                    if progress:
                        progress(len(chunk))
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise DiskFull(f"no space left while writing {destination.name}: {exc.strerror}") from exc
        raise


def http_download(session: requests.Session, url: str, destination: Path, progress: Progress | None,
                  headers: dict[str, str] | None = None) -> None:
    """GET `url` into `destination`, resuming from its current size with a Range request."""
    offset = destination.stat().st_size if destination.exists() else 0
    request_headers = dict(headers or {})
    if offset:
        request_headers["Range"] = f"bytes={offset}-"
    try:
        with session.get(url, headers=request_headers, stream=True, timeout=NETWORK_TIMEOUT_S) as response:
            if response.status_code == 416:  # already complete
                return
            if response.status_code == 404:
                raise ArtifactNotFound(f"{url} not found")
            response.raise_for_status()
            if offset and response.status_code != 206:  # server ignored the range: start again
                destination.unlink()
            write_chunks(response.iter_content(CHUNK_BYTES), destination, progress)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise StoreUnavailable(f"download of {url} interrupted: {exc.__class__.__name__}") from exc
    except requests.HTTPError as exc:
        raise ArtifactError(f"GET {url}: {exc}") from exc


# -- folder layout (local and HTTP) ------------------------------------------------------------------------------
class _LayoutStore(Store):
    """Reads the folder layout; subclasses say how to get a file of it."""

    @abstractmethod
    def _read(self, relative: str) -> bytes | None:
        """A file of the layout, or None when absent."""

    def _json(self, relative: str, default):
        raw = self._read(relative)
        if raw is None:
            return default
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{self.location}/{relative} is not valid JSON: {exc}") from exc

    def names(self) -> list[str]:
        return sorted(self._json("index.json", {}))

    def versions(self, name: str) -> list[str]:
        _check_name(name)
        return sorted(self._json("index.json", {}).get(name, []), key=semver_key)

    def tags(self, name: str) -> dict[str, str]:
        _check_name(name)
        return dict(self._json(f"tags/{name}.json", {}))

    def record(self, name: str, version: str) -> ArtifactRecord:
        _check_name(name)
        if not SEMVER_PATTERN.match(version):
            raise ArtifactNotFound(f"{version!r} is not a semantic version")
        data = self._json(f"refs/{name}/{version}.json", None)
        if data is None:
            raise ArtifactNotFound(f"{name}@{version} is not in {self.location}")
        return ArtifactRecord(name, version, data["manifest"], data.get("signature", ""))

    def read_blob(self, record: ArtifactRecord, digest: str) -> bytes:
        raw = self._read(f"blobs/sha256/{_hex(digest)}")
        if raw is None:
            raise ArtifactError(f"blob {digest[:19]}... of {record.name}@{record.version} is missing from {self.location}")
        return _check_blob(raw, digest, f"blob of {record.name}@{record.version}")


class LocalStore(_LayoutStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def _read(self, relative: str) -> bytes | None:
        try:
            return (self.root / relative).read_bytes()
        except FileNotFoundError:
            return None

    def download_blob(self, record: ArtifactRecord, digest: str, destination: Path, progress: Progress | None) -> None:
        source = self.root / "blobs" / "sha256" / _hex(digest)
        if not source.is_file():
            raise ArtifactError(f"blob {digest[:19]}... of {record.name}@{record.version} is missing from {self.location}")
        offset = destination.stat().st_size if destination.exists() else 0
        with open(source, "rb") as handle:
            handle.seek(offset)
            write_chunks(iter(lambda: handle.read(CHUNK_BYTES), b""), destination, progress)

    def publish(self, manifest_bytes: bytes, signature_bytes: bytes | None, folder: Path, name: str,
                version: str, files: list[tuple[str, str]]) -> ArtifactRecord:
        _check_name(name)
        manifest_digest = sha256_digest(manifest_bytes)
        signature_digest = sha256_digest(signature_bytes) if signature_bytes else ""
        ref_path = self.root / "refs" / name / f"{version}.json"
        if ref_path.exists():
            existing = json.loads(ref_path.read_bytes())
            if existing["manifest"] != manifest_digest:
                raise ArtifactError(f"{name}@{version} is already published with other content; versions are "
                                    "immutable (publish a new version)")
            if existing.get("signature") == signature_digest:
                return ArtifactRecord(name, version, manifest_digest, signature_digest)
        for relative, sha in files:
            self._put_file(folder / relative, sha)
        self._put_bytes(manifest_bytes)
        if signature_bytes:
            self._put_bytes(signature_bytes)
        _atomic_write(ref_path, json.dumps({"manifest": manifest_digest, "signature": signature_digest}).encode())
        self._update_index(name, version)
        return ArtifactRecord(name, version, manifest_digest, signature_digest)

    def set_tag(self, name: str, tag: str, version: str) -> None:
        self.record(name, version)
        tags = self.tags(name)
        tags[tag] = version
        _atomic_write(self.root / "tags" / f"{name}.json", json.dumps(tags, indent=1, sort_keys=True).encode())

    def _blob_path(self, sha: str) -> Path:
        return self.root / "blobs" / "sha256" / sha

    def _put_file(self, source: Path, sha: str) -> None:
        target = self._blob_path(sha)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        try:
            shutil.copyfile(source, temporary)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)

    def _put_bytes(self, data: bytes) -> None:
        target = self._blob_path(_hex(sha256_digest(data)))
        if not target.exists():
            _atomic_write(target, data)

    def _update_index(self, name: str, version: str) -> None:
        index = self._json("index.json", {})
        versions = set(index.get(name, []))
        versions.add(version)
        index[name] = sorted(versions, key=semver_key)
        _atomic_write(self.root / "index.json", json.dumps(index, indent=1, sort_keys=True).encode())


class HttpStore(_LayoutStore):
    """A LocalStore's folder served over HTTP(S) by any static file server; read-only."""

    writable = False

    def __init__(self, url: str) -> None:
        self.base = url.rstrip("/")
        self.location = self.base
        self.session = requests.Session()

    def _read(self, relative: str) -> bytes | None:
        url = f"{self.base}/{relative}"
        try:
            response = self.session.get(url, timeout=NETWORK_TIMEOUT_S)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise StoreUnavailable(f"{self.base} is unreachable: {exc.__class__.__name__}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ArtifactError(f"GET {url}: HTTP {response.status_code}")
        return response.content

    def download_blob(self, record: ArtifactRecord, digest: str, destination: Path, progress: Progress | None) -> None:
        http_download(self.session, f"{self.base}/blobs/sha256/{_hex(digest)}", destination, progress)

    def publish(self, *args, **kwargs) -> ArtifactRecord:
        raise ArtifactError(f"{self.location} is an HTTP store (read-only): publish to a local store and serve its folder")

    def set_tag(self, name: str, tag: str, version: str) -> None:
        raise ArtifactError(f"{self.location} is an HTTP store (read-only)")


# -- OCI registry ------------------------------------------------------------------------------------------------
class OciStore(Store):
    """An OCI distribution registry; `oci://host:port/prefix` holds model `m` in repository `prefix/m`.

    Plain HTTP is used for loopback hosts and `oci+http://`; anything else uses HTTPS.
    """

    def __init__(self, location: str) -> None:
        parsed = urlparse(location)
        if not parsed.netloc:
            raise ArtifactError(f"OCI location {location!r} must look like oci://host:port/prefix")
        self.location = location.rstrip("/")
        self.host = parsed.netloc
        self.prefix = parsed.path.strip("/")
        insecure = parsed.hostname in ("localhost", "127.0.0.1", "::1") or os.environ.get("TANGO2_OCI_INSECURE") == "1"
        self.scheme = "http" if insecure else "https"
        self.session = requests.Session()

    def _repository(self, name: str) -> str:
        _check_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _get(self, path: str, **kwargs) -> requests.Response:
        url = f"{self.scheme}://{self.host}/v2/{path}"
        try:
            return self.session.get(url, timeout=NETWORK_TIMEOUT_S, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise StoreUnavailable(f"OCI registry {self.host} is unreachable: {exc.__class__.__name__}") from exc

    def names(self) -> list[str]:
        response = self._get("_catalog")
        if response.status_code != 200:
            raise ArtifactError(f"{self.host} does not list its repositories (HTTP {response.status_code})")
        start = f"{self.prefix}/" if self.prefix else ""
        return sorted(r[len(start):] for r in response.json().get("repositories", []) if r.startswith(start))

    def _all_tags(self, name: str) -> list[str]:
        response = self._get(f"{self._repository(name)}/tags/list")
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise ArtifactError(f"{self.host}: tags of {name}: HTTP {response.status_code}")
        return response.json().get("tags") or []

    def versions(self, name: str) -> list[str]:
        return sorted((t for t in self._all_tags(name) if SEMVER_PATTERN.match(t)), key=semver_key)

    def tags(self, name: str) -> dict[str, str]:
        """Non-version tags, mapped to the version whose OCI manifest has the same digest."""
        all_tags = self._all_tags(name)
        by_digest = {self._manifest_digest(name, v): v for v in all_tags if SEMVER_PATTERN.match(v)}
        return {t: by_digest[d] for t in all_tags if not SEMVER_PATTERN.match(t)
                if (d := self._manifest_digest(name, t)) in by_digest}

    def _manifest_digest(self, name: str, reference: str) -> str:
        response = self._get(f"{self._repository(name)}/manifests/{reference}",
                             headers={"Accept": OCI_MANIFEST_MEDIA_TYPE})
        return response.headers.get("Docker-Content-Digest", sha256_digest(response.content))

    def record(self, name: str, version: str) -> ArtifactRecord:
        if not SEMVER_PATTERN.match(version):
            raise ArtifactNotFound(f"{version!r} is not a semantic version")
        response = self._get(f"{self._repository(name)}/manifests/{version}", headers={"Accept": OCI_MANIFEST_MEDIA_TYPE})
        if response.status_code == 404:
            raise ArtifactNotFound(f"{name}@{version} is not in {self.location}")
        if response.status_code != 200:
            raise ArtifactError(f"{self.host}: manifest of {name}@{version}: HTTP {response.status_code}")
        oci = response.json()
        config = oci.get("config", {})
        if config.get("mediaType") != MANIFEST_MEDIA_TYPE:
            raise ArtifactError(f"{name}@{version} in {self.location} is not a TANGO2 model artifact")
        signature = next((layer["digest"] for layer in oci.get("layers", [])
                          if layer.get("mediaType") == SIGNATURE_MEDIA_TYPE), "")
        return ArtifactRecord(name, version, config["digest"], signature)

    def read_blob(self, record: ArtifactRecord, digest: str) -> bytes:
        response = self._get(f"{self._repository(record.name)}/blobs/{digest}")
        if response.status_code != 200:
            raise ArtifactError(f"{self.host}: blob {digest[:19]}... of {record.name}: HTTP {response.status_code}")
        return _check_blob(response.content, digest, f"blob of {record.name}@{record.version}")

    def download_blob(self, record: ArtifactRecord, digest: str, destination: Path, progress: Progress | None) -> None:
        url = f"{self.scheme}://{self.host}/v2/{self._repository(record.name)}/blobs/{digest}"
        http_download(self.session, url, destination, progress)

    def _client(self):
        import oras.client

        self._get("")  # fail fast: oras retries an unreachable registry for minutes
        return oras.client.OrasClient(hostname=self.host, insecure=self.scheme == "http")

    def publish(self, manifest_bytes: bytes, signature_bytes: bytes | None, folder: Path, name: str,
                version: str, files: list[tuple[str, str]]) -> ArtifactRecord:
        import oras.oci

        manifest_digest = sha256_digest(manifest_bytes)
        try:
            existing = self.record(name, version)
        except ArtifactNotFound:
            existing = None
        if existing is not None:
            if existing.manifest_digest != manifest_digest:
                raise ArtifactError(f"{name}@{version} is already published with other content; versions are "
                                    "immutable (publish a new version)")
            return existing
        client = self._client()
        target = f"{self.host}/{self._repository(name)}:{version}"
        container = client.get_container(target)
        with tempfile.TemporaryDirectory(prefix="tango2-oci-") as scratch:
            config_path = Path(scratch) / "manifest.json"
            config_path.write_bytes(manifest_bytes)
            config, _ = oras.oci.ManifestConfig(str(config_path), MANIFEST_MEDIA_TYPE)
            self._check(client.upload_blob(str(config_path), container, config), "manifest")
            oci_manifest = oras.oci.NewManifest()
            oci_manifest["config"] = config
            if signature_bytes:
                signature_path = Path(scratch) / "signature.json"
                signature_path.write_bytes(signature_bytes)
                layer = oras.oci.NewLayer(str(signature_path), media_type=SIGNATURE_MEDIA_TYPE)
                self._check(client.upload_blob(str(signature_path), container, layer), "signature")
                oci_manifest["layers"].append(layer)
            for relative, _sha in files:
                layer = oras.oci.NewLayer(str(folder / relative), media_type=FILE_MEDIA_TYPE)
                layer["annotations"] = {TITLE_ANNOTATION: relative}
                self._check(client.upload_blob(str(folder / relative), container, layer), relative)
                oci_manifest["layers"].append(layer)
            self._check(client.upload_manifest(oci_manifest, container), "OCI manifest")
        return self.record(name, version)

    def set_tag(self, name: str, tag: str, version: str) -> None:
        response = self._get(f"{self._repository(name)}/manifests/{version}", headers={"Accept": OCI_MANIFEST_MEDIA_TYPE})
        if response.status_code != 200:
            raise ArtifactNotFound(f"{name}@{version} is not in {self.location}")
        url = f"{self.scheme}://{self.host}/v2/{self._repository(name)}/manifests/{tag}"
        put = self.session.put(url, data=response.content, headers={"Content-Type": OCI_MANIFEST_MEDIA_TYPE},
                               timeout=NETWORK_TIMEOUT_S)
        self._check(put, f"tag {tag}")

    def _check(self, response: requests.Response, what: str) -> None:
        if response.status_code not in (200, 201, 202):
            raise ArtifactError(f"pushing {what} to {self.host} failed: HTTP {response.status_code} {response.text[:200]}")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
