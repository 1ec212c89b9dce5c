"""The GPU proof: one prepared script, under 5 minutes on one H100/H200.

Steps, each independent (a failure is recorded and the next step runs):

1. **parity**: a random-weight ViT-B/32 CLIP loaded as cpu/fp32 and as cuda/fp16; per-vector
   cosine (images and texts, must be >= 0.999) and the same top-5 photos per query.
2. **throughput**: images/s of ``encode_pixels`` at fp16 for batches of 32, 128 and 512
   (host float32 arrays in, vectors out: what the pipeline calls), with peak GPU memory.
   **onnxruntime**: the exported image tower on ONNX Runtime's CUDA provider against torch
   fp16, where onnxruntime-gpu is installed (its wheel is too large to carry to the device
   machine: skipped there, with the reason).
3. **oom**: a forced out-of-memory (``torch.cuda.set_per_process_memory_fraction``) at encode
   (the batch is split, the vectors are the same), at batch 1 (one ResourceError line) and at
   load (``device: auto`` falls back to the CPU; ``device: cuda`` is one line).
4. **index_throughput**: ``benchmarks/index_throughput.py --device cuda`` on ~0.5 MP photos
   (the goal: 5,000 images/s for ViT-B/32 on one H100/H200-class GPU).
5. **faiss**: GPU against CPU FAISS, flat inner product, top-10 of 1,000 queries over 200k
   vectors (overlap and time); then the project's own index on the GPU (a copy made once,
   new vectors added to it, k > 2048 answered on the CPU). Without faiss-gpu: CPU timing
   only, with the reason.
6. **decode**: CPU decoding (``search.preprocess.decode``, every core) against nvJPEG
   (``torchvision.io.decode_jpeg`` on CUDA, batched, then resize, crop and normalise on the
   GPU), with how far the GPU's pixels are from the CPU's.

``--cpu-smoke`` runs every step at tiny sizes on the CPU (GPU-only parts reported as skipped
with the reason), to prove the script has no bugs before spending GPU minutes.

    python benchmarks/gpu_proof.py                # on the GPU machine
    python benchmarks/gpu_proof.py --cpu-smoke    # anywhere, ~1-2 minutes on 2 cores

Writes ``<out>/gpu_proof.json`` and ``<out>/gpu_proof.md`` (default ``bench-out/gpu-proof``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FULL = {
    "parity_images": 256, "parity_texts": 64, "throughput_images": 4096,
    "batches": (32, 128, 512), "oom_batch": 512, "photos": 1000, "long_side": 864,
    "vectors": 200_000, "queries": 1000, "dim": 512, "decode_photos": 512,
    "model_size": "vit-b-32", "project_vectors": 30_000,
}
SMOKE = {
    "parity_images": 8, "parity_texts": 6, "throughput_images": 16,
    "batches": (2, 4, 8), "oom_batch": 8, "photos": 12, "long_side": 640,
    "vectors": 20_000, "queries": 50, "dim": 64, "decode_photos": 12,
    "model_size": "tiny", "project_vectors": 3_000,
}
MIN_COSINE = 0.999


def log(msg: str) -> None:
    print(f"[gpu_proof {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def skipped(reason: str) -> dict:
    return {"status": "skipped", "reason": reason}


class Proof:
    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.args = args
        self.smoke = args.cpu_smoke
        self.p = SMOKE if self.smoke else FULL
        self.cuda = torch.cuda.is_available() and not self.smoke
        self.device = "cuda" if self.cuda else "cpu"
        self.out: Path = args.out
        self.results: dict[str, dict] = {}
        self._model_dir: Path | None = None
        self._photos: list[Path] | None = None
        self._decoded: tuple[object, np.ndarray] | None = None  # decoded once, reused

    # -- shared inputs ---------------------------------------------------------------------

    def model_dir(self) -> Path:
        """A random-weight CLIP (ViT-B/32's exact shape; tiny in smoke), built once."""
        if self._model_dir is None:
            from training.scratch import random_clip

            name = {"vit-b-32": "clip-vit-b-32-random"}.get(self.p["model_size"], "clip-tiny")
            self._model_dir = random_clip(self.args.models / name, self.p["model_size"])
        return self._model_dir

    def load(self, device: str, precision: str):
        from search.encoders import load_encoder

        return load_encoder(str(self.model_dir()), device=device, precision=precision)

    def photos(self) -> list[Path]:
        """~0.5 MP JPEGs made from the sample photos installed packages ship (cached)."""
        if self._photos is None:
            from benchmarks.photos import make_benchmark_photos

            folder = self.args.photo_cache / f"{self.p['long_side']}px"
            self._photos = make_benchmark_photos(folder, self.p["photos"], self.p["long_side"])
        return self._photos

    def pixels(self, spec, n: int) -> np.ndarray:
        """``n`` preprocessed photos (repeated when there are fewer photos)."""
        from search.preprocess import decode

        paths = self.photos()
        want = min(n, len(paths))
        if self._decoded is None or self._decoded[0] != spec or len(self._decoded[1]) < want:
            self._decoded = (spec, np.stack([decode(p, spec).pixels for p in paths[:want]]))
        base = self._decoded[1][:want]
        reps = -(-n // len(base))
        return np.ascontiguousarray(np.concatenate([base] * reps)[:n], np.float32)

    # -- running ---------------------------------------------------------------------------

    def step(self, name: str, fn: Callable[[], dict]) -> None:
        log(f"{name} ...")
        started = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # a failed step is a result too; the next one runs
            result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:500],
                      "traceback": traceback.format_exc()[-3000:]}
        result.setdefault("status", "ok")
        result["seconds"] = round(time.perf_counter() - started, 1)
        self.results[name] = result
        log(f"{name}: {result['status']} ({result['seconds']} s)")
        self.write()  # what was measured survives a timeout later on

    # -- 1. parity -------------------------------------------------------------------------

    def parity(self) -> dict:
        from search.samples import sample_photos

        ref = self.load("cpu", "fp32")
        if self.cuda:
            other_device, other_precision = "cuda", "fp16"
        else:  # the CPU has no fp16: bf16 exercises the same comparison
            other_device, other_precision = "cpu", "bf16"
        other = self.load(other_device, other_precision)
        pixels = self.pixels(ref.spec, self.p["parity_images"])
        captions = [c for p in sample_photos() for c in p.captions]
        texts = (captions * (1 + self.p["parity_texts"] // max(1, len(captions))))
        texts = texts[: self.p["parity_texts"]]
        a_img, b_img = ref.encode_pixels(pixels), other.encode_pixels(pixels)
        a_txt, b_txt = ref.encode_texts(texts), other.encode_texts(texts)
        img_cos = np.sum(a_img * b_img, axis=1)
        txt_cos = np.sum(a_txt * b_txt, axis=1)
        # Top-5: photo -> photo over the batch (a random model's text -> photo scores are
        # near-ties), and text -> photo; tie-aware too: a swap inside 1e-3 of fp32's score.
        same, same_or_tie = [], []
        for q_a, q_b, g_a, g_b in ((a_img, b_img, a_img, b_img), (a_txt, b_txt, a_img, b_img)):
            s_a, s_b = q_a @ g_a.T, q_b @ g_b.T
            top_a = np.argsort(-s_a, axis=1, kind="stable")[:, :5]
            top_b = np.argsort(-s_b, axis=1, kind="stable")[:, :5]
            same.append(bool((top_a == top_b).all()))
            fifth = np.take_along_axis(s_a, top_a[:, 4:5], axis=1)
            picked = np.take_along_axis(s_a, top_b, axis=1)
            same_or_tie.append(bool((picked >= fifth - 1e-3).all()))
        # The verdict takes a swap of near-tied photos (a random model has many) as the same.
        ok = bool(img_cos.min() >= MIN_COSINE and txt_cos.min() >= MIN_COSINE
                  and all(same_or_tie))
        return {
            "status": "ok" if ok or not self.cuda else "failed",
            "compared": f"cpu/fp32 against {other_device}/{other_precision}",
            "note": None if self.cuda else "CPU smoke: bf16 stands in for cuda/fp16 (not judged)",
            "images": len(pixels), "texts": len(texts),
            "min_image_cosine": round(float(img_cos.min()), 6),
            "min_text_cosine": round(float(txt_cos.min()), 6),
            "same_top5_image_to_image": same[0], "same_top5_text_to_image": same[1],
            "top5_within_ties": all(same_or_tie),
            "passes": ok,
        }

    # -- 2. throughput ---------------------------------------------------------------------

    def throughput(self) -> dict:
        import torch

        precision = "fp16" if self.cuda else "fp32"
        enc = self.load(self.device, precision)
        pixels = self.pixels(enc.spec, self.p["throughput_images"])
        rows = []
        for batch in self.p["batches"]:
            chunks = [pixels[i:i + batch] for i in range(0, len(pixels) - batch + 1, batch)]
            enc.encode_pixels(chunks[0])  # warm-up: kernels for this shape
            if self.cuda:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            for c in chunks:
                enc.encode_pixels(c)  # returns host vectors: synchronised
            seconds = time.perf_counter() - started
            row = {"batch": batch, "images": batch * len(chunks),
                   "images_per_s": round(batch * len(chunks) / seconds, 1)}
            if self.cuda:
                row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            rows.append(row)
            log(f"  batch {batch}: {row['images_per_s']} images/s")
        return {"device": self.device, "precision": precision, "rows": rows,
                "input": "float32 host arrays of 224x224 photos (encode_pixels)"}

    # -- 2b. ONNX Runtime's CUDA provider ---------------------------------------------------

    def onnxruntime(self) -> dict:
        """The image tower exported as ``model.runtime: onnxruntime`` exports it (fp32 ONNX),
        on ONNX Runtime's CUDA provider (the CPU provider in smoke), against torch on the
        same device at the throughput step's precision: images/s per batch, and the min
        cosine of its vectors to torch fp32 on the CPU."""
        import tempfile

        try:
            import onnxruntime as ort
        except ImportError as exc:
            return skipped(f"onnxruntime is not installed ({exc})")
        provider = "CUDAExecutionProvider" if self.cuda else "CPUExecutionProvider"
        if provider not in ort.get_available_providers():
            return skipped(f"{provider} is not in this onnxruntime: it needs onnxruntime-gpu "
                           "(its cp312 wheel, 244 MiB, is over the device machine's carry)")
        from search.encoders.base import l2_normalise
        from search.encoders.onnx_export import export_towers

        reference = self.load("cpu", "fp32")
        torch_enc = self.load(self.device, "fp16" if self.cuda else "fp32")
        batch = max(self.p["batches"][:2])
        pixels = self.pixels(reference.spec, 2 * batch)  # normalised float32, as both take
        with tempfile.TemporaryDirectory(prefix="gpu-proof-onnx-") as tmp:
            export_towers(reference.model, reference.model_type, reference.image_side(),
                          Path(tmp))
            session = ort.InferenceSession(str(Path(tmp) / "image.onnx"), providers=[provider])

            def run_ort(x: np.ndarray) -> np.ndarray:
                import torch

                return l2_normalise(torch.from_numpy(session.run(None, {"pixel_values": x})[0]))

            got = run_ort(pixels[:batch])
            want = reference.encode_pixels(pixels[:batch])
            rates = {}
            for name, fn in (("onnxruntime fp32", run_ort),
                             (f"torch {torch_enc.precision}", torch_enc.encode_pixels)):
                fn(pixels[:batch])  # warm-up
                started = time.perf_counter()
                for i in range(0, len(pixels), batch):
                    fn(pixels[i:i + batch])
                rates[name] = round(len(pixels) / (time.perf_counter() - started), 1)
                log(f"  {name}: {rates[name]} images/s")
        cos = float(np.sum(got * want, axis=1).min())
        return {"status": "ok" if cos >= MIN_COSINE else "failed", "provider": provider,
                "batch": batch, "images_per_s": rates, "min_cosine_to_torch_fp32": round(cos, 6)}

    # -- 3. forced out of memory -----------------------------------------------------------

    def oom(self) -> dict:
        if not self.cuda:
            return self._oom_injected()
        import torch

        from search.errors import ResourceError

        out: dict = {}
        enc = self.load("cuda", "fp16")
        batch = self.p["oom_batch"]
        pixels = self.pixels(enc.spec, batch)
        want = enc.encode_pixels(pixels)
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        enc.encode_pixels(pixels[:32])
        per_32 = torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated()
        held = torch.cuda.memory_allocated()
        records: list[logging.LogRecord] = []
        handler = _Collect(records)
        logging.getLogger("search.encoders.oom").addHandler(handler)
        try:
            # Room for about 64 images' activations: a batch of 512 cannot fit.
            torch.cuda.set_per_process_memory_fraction(min(1.0, (held + 2 * per_32) / total))
            enc.__dict__.pop("_oom_splitter", None)
            got = enc.encode_pixels(pixels)
            cap = enc.__dict__["_oom_splitter"].cap
            cos = float(np.sum(got * want, axis=1).min())
            out["encode"] = {"batch": batch, "split_to": cap, "min_cosine_to_unforced": round(
                cos, 6), "warnings": [r.getMessage() for r in records][:3],
                "handled": cap is not None and cap < batch and cos >= MIN_COSINE}
            gc.collect()
            torch.cuda.empty_cache()  # else cached blocks serve the batch of 1 under the cap
            torch.cuda.set_per_process_memory_fraction(min(1.0, (held + (1 << 20)) / total))
            enc.__dict__.pop("_oom_splitter", None)
            try:
                enc.encode_pixels(pixels[:1])
                out["single"] = {"handled": False, "why": "no OOM at batch 1"}
            except ResourceError as exc:
                out["single"] = {"handled": "model.batch_size" in str(exc), "error": str(exc)}
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0)
            logging.getLogger("search.encoders.oom").removeHandler(handler)
        del enc
        gc.collect()
        torch.cuda.empty_cache()
        out["load"] = self._oom_at_load(total)
        handled = [out["encode"]["handled"], out["single"]["handled"], out["load"]["handled"]]
        return {"status": "ok" if all(handled) else "failed", **out}

    def _oom_at_load(self, total: int) -> dict:
        import contextlib
        import io

        import torch

        from search.errors import ResourceError

        base = torch.cuda.memory_allocated()
        torch.cuda.set_per_process_memory_fraction(min(1.0, (base + (8 << 20)) / total))
        try:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                enc = self.load("auto", "fp32")
            auto = {"device": enc.device, "warned": "loading it on the CPU" in err.getvalue()}
            try:
                self.load("cuda", "fp32")
                explicit = {"error": None}
            except ResourceError as exc:
                explicit = {"error": str(exc)}
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0)
        return {"auto": auto, "explicit_cuda": explicit,
                "handled": auto["device"] == "cpu" and auto["warned"]
                and bool(explicit["error"]) and "model.device" in explicit["error"]}

    def _oom_injected(self) -> dict:
        """CPU smoke: no CUDA allocator to limit, so the model's forward raises the OOM."""
        import torch

        from search.errors import ResourceError

        enc = self.load("cpu", "fp32")
        batch = self.p["oom_batch"]
        pixels = self.pixels(enc.spec, batch)
        want = enc.encode_pixels(pixels)
        real = enc.model.get_image_features
        most = {"n": max(1, batch // 4)}

        def limited(**kwargs):
            if len(kwargs["pixel_values"]) > most["n"]:
                raise torch.OutOfMemoryError("CUDA out of memory (injected)")
            return real(**kwargs)

        enc.model.get_image_features = limited
        enc.__dict__.pop("_oom_splitter", None)
        got = enc.encode_pixels(pixels)
        cap = enc.__dict__["_oom_splitter"].cap
        most["n"] = 0
        enc.__dict__.pop("_oom_splitter", None)
        try:
            enc.encode_pixels(pixels[:1])
            single = {"handled": False}
        except ResourceError as exc:
            single = {"handled": "model.batch_size" in str(exc), "error": str(exc)}
        cos = float(np.sum(got * want, axis=1).min())
        return {
            "note": "CPU smoke: OOM injected into the model's forward; the load fallback "
                    "needs CUDA (skipped)",
            "encode": {"batch": batch, "split_to": cap, "min_cosine_to_unforced": round(cos, 6),
                       "handled": cap is not None and cap < batch and cos >= MIN_COSINE},
            "single": single,
            "load": skipped("needs CUDA"),
        }

    # -- 4. index_throughput.py ------------------------------------------------------------

    def index_throughput(self) -> dict:
        out = self.out / "index_throughput"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "index_throughput.py"),
               "--backends", "clip-b32", "--device", self.device,
               "--count", str(self.p["photos"]), "--long-side", str(self.p["long_side"]),
               "--photos", str(self.args.photo_cache / f"{self.p['long_side']}px"),
               "--out", str(out)]
        if self.smoke:
            cmd += ["--count", "8"]
        out.mkdir(parents=True, exist_ok=True)
        # Its model cache is <out>/models: share ours (a ViT-B/32 is built once).
        models = out / "models"
        if not models.exists():
            models.symlink_to(self.args.models.resolve(), target_is_directory=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.args.step_limit)
        result: dict = {"command": " ".join(cmd[1:]), "returncode": proc.returncode,
                        "stderr_tail": proc.stderr[-2000:]}
        summary = out / "index_throughput.json"
        if proc.returncode == 0 and summary.is_file():
            data = json.loads(summary.read_text())
            result["results"] = data.get("results")
            result["table"] = (out / "index_throughput.md").read_text()
            pipe = _find(data.get("results"), "pipeline")
            if pipe is not None:
                result["pipeline_images_per_s"] = pipe
                result["goal_5000_images_per_s"] = bool(self.cuda and pipe >= 5000)
        else:
            result["status"] = "error"
        return result

    # -- 5. FAISS --------------------------------------------------------------------------

    def faiss(self) -> dict:
        try:
            import faiss
        except ImportError as exc:
            return skipped(f"faiss is not installed ({exc})")
        n, d, nq = self.p["vectors"], self.p["dim"], self.p["queries"]
        rng = np.random.default_rng(0)
        xb = _unit(rng.normal(size=(n, d)).astype(np.float32))
        xq = _unit(xb[rng.choice(n, nq, replace=False)] + 0.1 * rng.normal(size=(nq, d)))
        cpu = faiss.IndexFlatIP(d)
        cpu.add(xb)
        cpu.search(xq[:4], 10)
        started = time.perf_counter()
        _, cpu_ids = cpu.search(xq, 10)
        cpu_s = time.perf_counter() - started
        out: dict = {"vectors": n, "dim": d, "queries": nq, "k": 10,
                     "cpu_ms_per_batch": round(1000 * cpu_s, 1), "faiss": faiss.__version__}
        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if not hasattr(faiss, "StandardGpuResources") or gpus == 0:
            out["gpu"] = skipped("faiss-gpu not installed" if not hasattr(
                faiss, "StandardGpuResources") else "faiss-gpu sees no GPU")
        else:
            res = faiss.StandardGpuResources()
            started = time.perf_counter()
            gpu = faiss.index_cpu_to_gpu(res, 0, cpu)
            copy_s = time.perf_counter() - started
            gpu.search(xq[:4], 10)
            started = time.perf_counter()
            _, gpu_ids = gpu.search(xq, 10)
            gpu_s = time.perf_counter() - started
            pairs = zip(cpu_ids, gpu_ids, strict=True)
            overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in pairs])
            out["gpu"] = {"copy_ms": round(1000 * copy_s, 1),
                          "gpu_ms_per_batch": round(1000 * gpu_s, 2),
                          "top10_overlap_with_cpu": round(float(overlap), 5),
                          "same_top10": bool((cpu_ids == gpu_ids).all())}
        out["project_index"] = self._project_index(faiss, gpus)
        return out

    def _project_index(self, faiss, gpus: int) -> dict:
        """FaissIndex itself: a GPU copy made once, new vectors added to it, k > 2048 on the
        CPU, results equal to the CPU's."""
        if not hasattr(faiss, "StandardGpuResources") or gpus == 0:
            return skipped("needs faiss-gpu and a GPU")
        from sqlalchemy import insert

        from search.store import Content, Embedding, Store, vector_to_blob
        from search.vectors import FaissIndex, gpu

        def add(store, vecs, tag):
            with store.session() as s:
                ids = list(s.execute(insert(Content).returning(
                    Content.id, sort_by_parameter_order=True),
                    [{"hash": f"{tag}-{i}", "size": 1, "width": 1, "height": 1}
                     for i in range(len(vecs))]).scalars())
                s.execute(insert(Embedding), [
                    {"content_id": c, "model": "m", "dim": vecs.shape[1],
                     "vector": vector_to_blob(v)} for c, v in zip(ids, vecs, strict=True)])
            return ids

        rng = np.random.default_rng(1)
        n = self.p["project_vectors"]
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(f"sqlite:///{tmp}/db.sqlite")
            try:
                add(store, _unit(rng.normal(size=(n, 512)).astype(np.float32)), "a")
                index = FaissIndex(store, "m", Path(tmp), kind="flat", verify=False).open()
                q = _unit(rng.normal(size=(8, 512)).astype(np.float32))
                for _ in range(gpu.GPU_AFTER_SEARCHES + 1):
                    index.search(q, 10)
                made = index.gpu_clones
                add(store, _unit(rng.normal(size=(2000, 512)).astype(np.float32)), "b")
                index.catch_up()
                index.persist(force=True)
                got = index.search(q, 10)[1]
                big = index.search(q, 4096)[1]
                index.use_gpu = False
                want = index.search(q, 10)[1]
                return {"clones_after_first_searches": made,
                        "clones_after_adding_2000": index.gpu_clones,
                        "same_top10_as_cpu": bool((got == want).all()),
                        "k_4096_columns": int(big.shape[1]),
                        "handled": made == 1 and index.gpu_clones == 1
                        and bool((got == want).all()) and big.shape[1] == 4096}
            finally:
                store.close()

    # -- 6. decoding -----------------------------------------------------------------------

    def decode(self) -> dict:
        from search.encoders.clip import spec_from_processor_config

        spec = spec_from_processor_config(json.loads(
            (self.model_dir() / "preprocessor_config.json").read_text()))
        paths = self.photos()[: self.p["decode_photos"]]
        workers = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1))
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_cpu_decode, [(str(p), spec) for p in paths[:workers]]))  # warm
            started = time.perf_counter()
            cpu_pixels = list(pool.map(_cpu_decode, [(str(p), spec) for p in paths],
                                       chunksize=8))
            cpu_s = time.perf_counter() - started
        out: dict = {"photos": len(paths), "long_side": self.p["long_side"],
                     "cpu": {"processes": workers,
                             "images_per_s": round(len(paths) / cpu_s, 1)}}
        if not self.cuda:
            out["nvjpeg"] = skipped("needs CUDA")
            return out
        try:
            import torchvision  # noqa: F401
        except ImportError as exc:
            out["nvjpeg"] = skipped(f"torchvision is not installed ({exc})")
            return out
        gpu_decode(paths[:32], spec)  # warm-up: nvJPEG handles and kernels
        started = time.perf_counter()
        gpu_pixels = []
        for i in range(0, len(paths), 128):
            gpu_pixels.append(gpu_decode(paths[i:i + 128], spec))
        gpu_s = time.perf_counter() - started
        gpu_all = np.concatenate(gpu_pixels)
        cpu_all = np.stack(cpu_pixels)
        diff = np.abs(gpu_all - cpu_all).mean(axis=(1, 2, 3))
        out["nvjpeg"] = {"batch": 128, "images_per_s": round(len(paths) / gpu_s, 1),
                         "mean_abs_pixel_diff_vs_cpu": round(float(diff.mean()), 4),
                         "max_photo_mean_abs_diff": round(float(diff.max()), 4),
                         "note": "no JPEG draft or EXIF orientation on the GPU path"}
        out["gpu_wins"] = out["nvjpeg"]["images_per_s"] > out["cpu"]["images_per_s"]
        return out

    # -- report ----------------------------------------------------------------------------

    def write(self) -> None:
        import torch

        self.out.mkdir(parents=True, exist_ok=True)
        meta = {
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "mode": "cpu-smoke" if self.smoke else "gpu",
            "device": torch.cuda.get_device_name() if self.cuda else "cpu",
            "torch": torch.__version__, "python": platform.python_version(),
            "cpus": os.cpu_count(), "sizes": {k: v for k, v in self.p.items()},
        }
        (self.out / "gpu_proof.json").write_text(
            json.dumps({**meta, "steps": self.results}, indent=2, default=str) + "\n")
        (self.out / "gpu_proof.md").write_text(markdown(meta, self.results))


class _Collect(logging.Handler):
    def __init__(self, records: list) -> None:
        super().__init__(logging.WARNING)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _unit(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), np.float32)


def _find(results, key: str) -> float | None:
    """The first ``key`` figure (images/s) in index_throughput's summaries."""
    for summary in (results or {}).values():
        value = summary.get(key) if isinstance(summary, dict) else None
        if isinstance(value, dict):
            value = value.get("median") or value.get("images_per_s")
        if isinstance(value, int | float):
            return float(value)
    return None


def _cpu_decode(job: tuple[str, object]) -> np.ndarray:
    from search.preprocess import decode

    path, spec = job
    return decode(path, spec).pixels


def gpu_decode(paths: list[Path], spec) -> np.ndarray:
    """nvJPEG decode of a batch, then the spec's resize (shortest side, bicubic, antialiased),
    centre crop and normalisation on the GPU; float32 [N, 3, H, W] on the host."""
    import torch
    import torch.nn.functional as F
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    from search.encoders.pixels import normalise_tensor

    data = [read_file(str(p)) for p in paths]
    images = decode_jpeg(data, mode=ImageReadMode.RGB, device="cuda")
    ch, cw = spec.crop or (224, 224)
    out = []
    for img in images:
        h, w = img.shape[-2:]
        short = spec.resize_shortest or min(ch, cw)
        scale = short / min(h, w)
        size = (max(short, round(h * scale)), max(short, round(w * scale)))
        x = F.interpolate(img[None].float(), size=size, mode="bicubic", antialias=True,
                          align_corners=False)[0]
        top, left = (size[0] - ch) // 2, (size[1] - cw) // 2
        out.append(x[:, top:top + ch, left:left + cw].clamp(0, 255))
    return normalise_tensor(torch.stack(out), spec).cpu().numpy().astype(np.float32)


def markdown(meta: dict, steps: dict) -> str:
    lines = [f"# GPU proof ({meta['mode']}, {meta['device']}, {meta['date']})", "",
             f"torch {meta['torch']}, Python {meta['python']}, {meta['cpus']} CPUs.", ""]
    for name, r in steps.items():
        lines.append(f"## {name}: {r.get('status')} ({r.get('seconds')} s)")
        lines.append("")
        if name == "throughput" and "rows" in r:
            lines += ["| batch | images/s | peak GiB |", "|--:|--:|--:|"]
            lines += [f"| {x['batch']} | {x['images_per_s']} | {x.get('peak_gib', '-')} |"
                      for x in r["rows"]]
        elif name == "index_throughput" and r.get("table"):
            lines.append(r["table"])
        else:
            shown = {k: v for k, v in r.items()
                     if k not in ("traceback", "stderr_tail", "status", "seconds")}
            lines += ["```", json.dumps(shown, indent=1, default=str), "```"]
        lines.append("")
    return "\n".join(lines) + "\n"


STEPS = ("parity", "throughput", "onnxruntime", "oom", "index_throughput", "faiss", "decode")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu-smoke", action="store_true",
                   help="tiny sizes on the CPU; GPU-only parts are reported as skipped")
    p.add_argument("--out", type=Path, default=ROOT / "bench-out" / "gpu-proof")
    p.add_argument("--models", type=Path, default=ROOT / "bench-out" / "models",
                   help="where the random-weight CLIPs are built (cached)")
    p.add_argument("--photo-cache", type=Path, default=ROOT / "bench-out" / "photos")
    p.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset")
    p.add_argument("--step-limit", type=int, default=150,
                   help="seconds index_throughput.py may run")
    args = p.parse_args(argv)
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = set(args.steps) - set(STEPS)
    if unknown:
        p.error(f"--steps: unknown {sorted(unknown)}; choose from {', '.join(STEPS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [m for m in ("torch", "transformers", "pydantic", "sqlalchemy", "yaml", "PIL")
               if _missing(m)]
    if missing:
        print(f"gpu_proof: missing Python packages: {', '.join(missing)} "
              "(pip install -e . from the repository)", file=sys.stderr)
        return 2
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print("gpu_proof: no CUDA GPU here; run with --cpu-smoke to check the script",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    proof = Proof(args)
    wall = time.perf_counter()
    for name in args.steps:
        proof.step(name, getattr(proof, name))
    proof.write()
    print((args.out / "gpu_proof.md").read_text(), end="")
    failed = [n for n, r in proof.results.items() if r["status"] in ("error", "failed")]
    log(f"done in {time.perf_counter() - wall:.0f} s; wrote {args.out / 'gpu_proof.json'}"
        + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


if __name__ == "__main__":
    sys.exit(main())
