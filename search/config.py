"""One configuration object: ``config.yaml``, then ``PIXSEEK_...`` variables, then CLI flags.

Environment variables name a key by its path in upper case joined with ``_``:
``PIXSEEK_MODEL_BATCH_SIZE=16`` sets ``model.batch_size``; ``PIXSEEK_DATA_DIR`` sets
``data_dir``. Values are read as YAML, so ``PIXSEEK_LIBRARY_ROOTS='[~/Pictures, /srv/photos]'``
gives a list. ``PIXSEEK_MODEL`` is a short form of ``PIXSEEK_MODEL_NAME``.
Every invalid value is one ``ConfigError`` that names the key and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from search.errors import ConfigError
from search.limits import MAX_K

ENV_PREFIX = "PIXSEEK_"
# Variables read elsewhere, not settings: the config file path and the web UI's access token.
NON_SETTING_VARS = {"PIXSEEK_CONFIG", "PIXSEEK_TOKEN"}
DEFAULT_CONFIG_NAME = "config.yaml"


class _Section(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LibraryConfig(_Section):
    roots: list[Path] = Field(default_factory=list)
    ignore: list[str] = Field(
        default_factory=lambda: ["**/.*", "**/.*/**", "**/@eaDir/**", "**/#recycle/**"]
    )
    extensions: list[str] = Field(
        default_factory=lambda: [
            ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
            ".heic", ".heif", ".avif",
        ]
    )
    follow_symlinks: bool = False

    @field_validator("extensions")
    @classmethod
    def _lower_dotted(cls, value: list[str]) -> list[str]:
        return [("." + e.lstrip(".")).lower() for e in value]


MAX_BATCH = 4096
# model.batch_size auto, per device. 256 photos of 224 px through an fp16 ViT-B/32 need
# well under 1 GiB of activations (an estimate: benchmarks/gpu_proof.py measures it), and a
# larger model that runs out of memory has its batch halved (search.encoders.oom).
AUTO_BATCH = {"cpu": 32, "mps": 32, "cuda": 256}


class ModelConfig(_Section):
    name: str = "openai/clip-vit-base-patch32"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    # Images per model call. auto: 32 on the CPU and MPS, 256 on CUDA (a batch of 32 leaves
    # a large GPU idle between launches); a number is used as is everywhere.
    batch_size: int | Literal["auto"] = Field(default="auto")
    # fp32 | bf16 | fp16 | int8, or auto: measured once per model, device and CPU on real
    # sample photos, the fastest whose vectors stay within cosine 0.995 of fp32's
    # (search.encoders.precision). The offline model always runs in fp32.
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8", "int8-static"] = "auto"
    # torch | onnxruntime | openvino (the image and text towers exported once, CPU only), or
    # auto: with precision auto, the fastest (runtime, precision) pair that passes the same
    # fidelity check (search.encoders.runtime_choice); with an explicit precision, torch
    # (int8-static: OpenVINO, else ONNX Runtime). int8-static is post-training int8
    # calibrated on the library's photos (search.encoders.runtimes).
    # torch by default: auto's one-off measurement (exports and int8 calibration of every
    # pair) takes about 85 s for a B/32 on 2 cores; choose auto (or a runtime) to opt in.
    runtime: Literal["auto", "torch", "onnxruntime", "openvino"] = "torch"
    # May auto pick fp16 (CUDA, MPS)? false keeps fp16 out of auto's candidates.
    fp16: bool = True

    @field_validator("batch_size")
    @classmethod
    def _batch_range(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 < value <= MAX_BATCH:
            raise ValueError(f"must be 1 to {MAX_BATCH}, or 'auto'")
        return value

    def batch_for(self, device: str) -> int:
        """``batch_size`` on ``device`` (cpu, cuda, mps: the encoder's, once loaded)."""
        if self.batch_size == "auto":
            return AUTO_BATCH.get(device, AUTO_BATCH["cpu"])
        return int(self.batch_size)


class IndexerConfig(_Section):
    # 0 decodes in the main process; "auto": one worker per core, at most 8, when the model
    # runs on the CPU; one per core but the main process's, uncapped, when it runs on a GPU.
    decode_workers: int | Literal["auto"] = "auto"
    # Larger images are refused as decompression bombs (Pillow's own limit is 89 Mpx).
    max_image_pixels: int = Field(default=200_000_000, gt=0)
    # Decode large JPEGs at a reduced scale (DCT scaling) before the exact resize.
    jpeg_draft: bool = True
    hash_threads: int = Field(default=4, gt=0, le=64)
    # Decode and encode on a Ray cluster instead (pixseek index --ray [ADDRESS]): "local"
    # starts one on this machine, "auto" joins the one this host belongs to, or
    # ray://head:10001. Needs pip install 'pixseek[ray]'. Unset: this process and its
    # decode workers.
    ray: str | None = None
    # Encoding actors on the cluster, each holding the model (one per GPU there).
    ray_workers: int = Field(default=1, gt=0, le=1024)

    @field_validator("decode_workers")
    @classmethod
    def _non_negative(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be 0 or more, or 'auto'")
        return value

    def worker_count(self, device: str | None = None) -> int:
        """Decode workers when the model runs on ``device`` (None: as on the CPU).

        On the CPU, one per core (at most 8): the model's threads also use every core, and
        a worker per core fills the cycles they leave idle; one worker fewer than the cores
        indexed 3-11% fewer photos/s on 2 cores (benchmarks/README.md). On a GPU decoding is
        the bottleneck (a core decodes tens to hundreds of photos/s, a large GPU encodes
        thousands), so auto takes every core but the main process's, which feeds the GPU."""
        if self.decode_workers == "auto":
            cores = os.cpu_count() or 2
            return max(1, cores - 1) if device == "cuda" else min(8, cores)
        return int(self.decode_workers)


class WatchConfig(_Section):
    # Index a folder once it has been quiet this long: a copy of 500 photos is one run,
    # and a file still being written is read after its writer has paused.
    settle_seconds: float = Field(default=2.0, ge=0, le=3600)
    # Full rescan of every root this often, for changes the OS did not report
    # (network shares, changes while pixseek was not running). 0 turns it off.
    rescan_minutes: float = Field(default=360, ge=0)


class IndexConfig(_Section):
    # auto: exact flat search while the library is small enough for it to be fast, then an
    # IVF index past a measured size (search.vectors.kinds). flat: always exact, float32.
    # fp16: always exact over half-size vectors. ivf / hnsw: approximate, tuned for
    # recall@10 >= 0.95 against exact search (``pixseek search --exact`` checks it).
    kind: Literal["auto", "flat", "fp16", "ivf", "hnsw"] = "auto"
    # A GPU copy of a flat / fp16 snapshot (needs faiss-gpu and a GPU). The copy costs a
    # transfer of the whole index, which a one-shot search never earns back: it is made
    # once a process has searched the index GPU_AFTER_SEARCHES times (serve, watch) and it
    # holds GPU_MIN_VECTORS (search.vectors.faiss_index); new vectors are added to it; k
    # above FAISS's GPU limit (2048) searches on the CPU.
    use_gpu: bool = True
    # Where vectors live: faiss (files in the data dir, the default) or milvus (a Milvus
    # server or cluster, for libraries past one machine; docs/scale-out.md). With milvus,
    # kind and use_gpu are the server's business.
    backend: Literal["faiss", "milvus"] = "faiss"
    # A Milvus server (http://host:19530) or a local file that milvus-lite serves; unset:
    # <data_dir>/vectors.milvus.db.
    milvus_uri: str | None = None
    # The Milvus index type of a new collection: FLAT is exact (what FAISS's flat kind
    # does); a cluster of 100M vectors wants HNSW, IVF_SQ8 or DISKANN (docs/scale-out.md).
    milvus_index_type: Literal["FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8", "DISKANN", "AUTOINDEX"] = (
        "FLAT")


class SearchConfig(_Section):
    default_k: int = Field(default=20, gt=0, le=MAX_K)
    max_query_chars: int = Field(default=1000, gt=0)


class ServeConfig(_Section):
    # Worker threads of the web server (waitress). Searches share one model behind a lock,
    # so more threads mostly help thumbnails and photos load beside a running search.
    threads: int = Field(default=8, ge=1, le=64)
    # Open connections the server keeps. An idle connection costs no thread, only a file
    # descriptor and a few kB; past the limit waitress stops accepting, so everyone waits
    # for idle ones to time out (waitress's default of 100 let 101 idle sockets stop the
    # server for two minutes). webui.serve raises the open-file limit to fit.
    connection_limit: int = Field(default=1000, ge=10, le=10_000)
    # Seconds an idle connection (keep-alive, or a request that stopped arriving) stays
    # open before it is closed; checked every quarter of it. Requests being answered are
    # never cut.
    channel_timeout: int = Field(default=30, ge=2, le=3600)


class OcrConfig(_Section):
    # Read the text in photos (signs, receipts, screenshots) after the CLIP pass: auto is
    # on when the `ocr` extra (rapidocr with ONNX Runtime) is installed.
    enabled: bool | Literal["auto"] = "auto"
    # Lines the recogniser is less sure of than this are dropped (0 to 1).
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    # Photos are shrunk to this longest side before detection: text 20 px high in a 4000 px
    # photo stays legible at 1600, and detection costs grow with the pixels.
    max_side: int = Field(default=1600, ge=320, le=8192)
    # A photo that takes longer is recorded as failed (and never stops indexing).
    time_limit: float = Field(default=60.0, gt=0, le=3600)

    def active(self) -> bool:
        if self.enabled == "auto":
            from search.ocr import available

            return available()
        return bool(self.enabled)


class Config(_Section):
    data_dir: Path = Path("~/.local/share/pixseek")
    database_url: str | None = None
    library: LibraryConfig = Field(default_factory=LibraryConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    indexer: IndexerConfig = Field(default_factory=IndexerConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    ocr: OcrConfig = Field(default_factory=OcrConfig)
    # Whether a person chose model.name (file, environment or flag). When not, a library
    # searches with the model it was indexed with (search.library); built directly in
    # code, a Config's model counts as chosen.
    _model_chosen: bool = PrivateAttr(default=True)

    @property
    def model_chosen(self) -> bool:
        return self._model_chosen

    def __eq__(self, other: object) -> bool:
        # The settings, not who chose them.
        if not isinstance(other, Config):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # as BaseModel's: mutable, so unhashable

    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_path / 'pixseek.db'}"


def _set_path(tree: dict[str, Any], dotted: list[str], value: Any) -> None:
    for part in dotted[:-1]:
        node = tree.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config: {'.'.join(dotted)}: {part} is not a section")
        tree = node
    tree[dotted[-1]] = value


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """Map PIXSEEK_SECTION_KEY variables onto the config tree, section names first."""
    sections = {
        name: set(field.annotation.model_fields)  # type: ignore[union-attr]
        for name, field in Config.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key in NON_SETTING_VARS:
            continue
        name = key[len(ENV_PREFIX):].lower()
        value = yaml.safe_load(raw) if raw.strip() else None
        if name == "model":
            _set_path(tree, ["model", "name"], raw)
            continue
        for section, keys in sections.items():
            if name.startswith(section + "_") and name[len(section) + 1:] in keys:
                _set_path(tree, [section, name[len(section) + 1:]], value)
                break
        else:
            if name in Config.model_fields and name not in sections:
                tree[name] = raw if name in ("database_url", "data_dir") else value
            else:
                raise ConfigError(
                    f"environment: {key} is not a pixseek setting; settings are "
                    + ", ".join(_all_keys())
                )
    return tree


def _all_keys() -> list[str]:
    keys: list[str] = []
    for name, field in Config.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += [f"{name}.{sub}" for sub in ann.model_fields]
        else:
            keys.append(name)
    return keys


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _explain(err: ValidationError, origin: str) -> ConfigError:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        section = key.rsplit(".", 1)[0] if "." in key else ""
        allowed = [k for k in _all_keys() if k.startswith(section + ".")] if section else [
            k for k in Config.model_fields
        ]
        return ConfigError(f"{origin}: unknown key '{key}'; allowed here: {', '.join(allowed)}")
    got = first.get("input")
    return ConfigError(f"{origin}: {key}: {first['msg']} (got {got!r})")


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Build the configuration: file, then environment, then explicit overrides.

    ``path`` None means ``$PIXSEEK_CONFIG`` if set, else ``./config.yaml`` if it exists,
    else the built-in defaults. ``overrides`` uses dotted keys: ``{"model.name": "offline"}``.
    """
    environ = dict(os.environ if environ is None else environ)
    origin = "defaults"
    tree: dict[str, Any] = {}
    if path is None and environ.get(ENV_PREFIX + "CONFIG"):
        path = environ[ENV_PREFIX + "CONFIG"]
    if path is None and Path(DEFAULT_CONFIG_NAME).is_file():
        path = DEFAULT_CONFIG_NAME
    if path is not None:
        origin = str(path)
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of settings")
        tree = loaded or {}
    try:
        Config.model_validate(tree)
    except ValidationError as exc:
        raise _explain(exc, origin) from None
    env_tree = _env_overrides(environ)
    tree = _merge(tree, env_tree)
    try:
        Config.model_validate(tree)
    except ValidationError as exc:
        raise _explain(exc, "environment") from None
    flag_tree: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(flag_tree, dotted.split("."), value)
    tree = _merge(tree, flag_tree)
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        raise _explain(exc, "command line") from None
    model = tree.get("model")
    config._model_chosen = isinstance(model, dict) and model.get("name") is not None
    return config
