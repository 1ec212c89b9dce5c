"""Library size against what a user feels: opening, adding a photo, searching, memory.

    python benchmarks/library_scale.py build DIR --photos N --model M
    python benchmarks/library_scale.py run [--sizes 1000,10000,100000,1000000] [--model clip-b32]
    python benchmarks/library_scale.py crossover [--dim 512]

``build`` writes a data directory whose store holds N synthetic photos for model M, exactly
as ``--model M`` names it, so ``pixseek --data-dir DIR --model M search ...`` searches them.
Each photo is a file row under a fake root (``/synthetic-library/...``), a content and an
embedding: unit vectors in M's dimension, in clusters of Zipf-distributed sizes around a
shared direction, shaped like a real library (``SyntheticLibrary``). Rows go in through the
store's own insert methods, 20k photos per transaction; then the vector index is built the
way ``pixseek`` builds it on first open.

``run`` builds (or reuses, under ``bench-out/library-scale/``) a library of each size and
measures, in one run on the same machine:

- **open**: ``index_for(...).open()`` as a reader opens it (``pixseek search``, ``serve``)
  in a fresh process with the library's files evicted from the page cache (cold) and again
  (warm); and as the indexer opens it (checking the vector count against the store), cold;
- **index one photo**: the wall time of ``pixseek index NEWFOLDER`` (one new JPEG), against
  the same command on an empty library, and its peak RSS;
- **search CLI**: the wall time of ``pixseek search "..." -k 10``, against an empty library;
- **catch-up**: a running ``pixseek serve`` shows a photo another process indexed: the time
  from that process's exit to the first ``/api/search`` answer that holds it;
- **queries**: p50 / p95 of the vector search plus the join to the store
  (``Engine.search_vector``), of a whole text query (``Engine.search_text``), of exact
  search (``exact=True``) and of ``/api/search`` over HTTP against ``pixseek serve``;
- **recall@10** of the index against exact search over what it stores, and against exact
  float32 search over the generated vectors;
- **memory and disk**: RSS of ``pixseek serve`` after the queries, bytes of the database and
  of the vector index.

It prints a markdown table and writes ``bench-out/library_scale.{json,md}``. ``crossover``
times exact flat search against a tuned IVF index at sizes around the ``auto`` threshold.

The default model ``clip-b32`` is a randomly initialised CLIP of ViT-B/32 shape (512-d; costs
what the real one costs), built once under ``bench-out/models``; ``offline`` (384-d) or any
model name also works.
At 1M photos the first build takes about ten minutes on two cores; later runs reuse it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_OUT = Path("bench-out")
FAKE_ROOT = "/synthetic-library"
CHUNK = 20_000
QUERY_TEXTS = [  # never among the texts an index tunes on (search.vectors.queries)
    "my daughter on a red bike in the snow", "a dog on a beach at sunset", "birthday cake",
    "a cat asleep on a sofa", "mountains reflected in a lake", "a plate of pasta",
    "fireworks over a city", "a man in a blue suit", "kids playing football", "a red car",
    "a bowl of fruit", "an old stone church", "a baby laughing", "autumn leaves on a path",
    "a sailing boat", "snow on pine trees", "a crowded market", "a horse in a field",
    "the eiffel tower at night", "a cup of coffee on a table",
    "mountains at sunset", "a wedding dress", "grandma in the kitchen", "a receipt",
    "a street sign in the rain", "a tent under the stars", "two kids on a trampoline",
    "a black and white photo of a bridge", "a lighthouse on a cliff", "a bowl of ramen",
    "a skateboarder in a park", "a tabby cat on a windowsill", "a christmas tree",
    "a view from an airplane window", "a messy desk with a laptop", "a red tulip",
    "a brown bear in a river", "people dancing at a party", "a train station platform",
    "a sandcastle",
]
BUILT = "built.json"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the synthetic library ---------------------------------------------------------------


class SyntheticLibrary:
    """Deterministic unit vectors shaped like a photo library's embeddings: one cluster per
    ~500 photos (an event, a trip, a subject), sizes Zipf-distributed, all around a shared
    direction as CLIP embeddings are (mean pairwise cosine about 0.2 at 512-d)."""

    def __init__(self, n: int, dim: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n, self.dim, self.seed = n, dim, seed
        k = max(16, n // 500)
        mean = rng.normal(size=dim)
        centres = rng.normal(size=(k, dim))
        centres = 0.6 * mean / np.linalg.norm(mean) + 0.8 * _unit(centres)
        self.centres = _unit(centres).astype(np.float32)
        weights = 1.0 / np.arange(1, k + 1) ** 0.7
        self.p = weights / weights.sum()

    def vectors(self, start: int, count: int) -> np.ndarray:
        """Photos ``start .. start+count``: the same vectors whatever the chunking."""
        out = np.empty((count, self.dim), np.float32)
        for block in range(start // CHUNK, (start + count - 1) // CHUNK + 1):
            rng = np.random.default_rng([self.seed, block])
            which = rng.choice(len(self.centres), size=CHUNK, p=self.p)
            noise = rng.standard_normal((CHUNK, self.dim), dtype=np.float32)
            v = _unit(self.centres[which] + noise * (0.9 / np.sqrt(self.dim)))
            lo, hi = max(start, block * CHUNK), min(start + count, (block + 1) * CHUNK)
            out[lo - start:hi - start] = v[lo - block * CHUNK:hi - block * CHUNK]
        return out

    def queries(self, n: int, seed: int = 99) -> np.ndarray:
        """Text-query-like vectors: near a subject, but not on top of any one photo
        (best match cosine about 0.5, as CLIP text-to-image scores sit below image pairs)."""
        rng = np.random.default_rng(seed)
        which = rng.choice(len(self.centres), size=n, p=self.p)
        q = self.centres[which] + rng.standard_normal((n, self.dim)) * (1.2 / np.sqrt(self.dim))
        return _unit(q).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# -- build -------------------------------------------------------------------------------


def resolve_model(name: str, out: Path) -> str:
    """``clip-b32`` is the random ViT-B/32-shaped CLIP, built once; anything else as given."""
    if name != "clip-b32":
        return name
    from training.scratch import random_clip

    return str(random_clip(out / "models" / "clip-b32", "vit-b-32").resolve())


def model_facts(model: str) -> tuple[str, int]:
    """(the id vectors are tagged with, dimension), as ``pixseek --model M`` would see them."""
    encoder = load_model(model)
    return encoder.model_id, int(encoder.encode_texts(["a photo"]).shape[1])


def load_model(model: str):
    from search.encoders import load_encoder

    return load_encoder(model, device="cpu")


def seed_text_queries(config, model: str) -> None:
    """What ``pixseek index`` stores before it builds an approximate index: the model's
    text embeddings of reference texts, which the index tunes its depth on."""
    from search.vectors import snapshot
    from search.vectors.queries import QuerySample

    encoder = load_model(model)
    folder = snapshot.folder_for(config.data_path, encoder.model_id)
    QuerySample(folder, encoder.model_id).ensure_seed(encoder.encode_texts)


def config_for(data_dir: Path, model: str):
    from search.config import load_config

    empty = data_dir / "bench-config.yaml"
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.write_text("{}\n")
    return load_config(empty, overrides={"data_dir": str(data_dir), "model.name": model},
                       environ={})


def build(data_dir: Path, photos: int, model: str, seed: int = 0) -> dict:
    """Fill ``data_dir`` with ``photos`` synthetic photos for ``model``; build its index."""
    from search.store import File, Store
    from search.vectors import index_for

    model_id, dim = model_facts(model)
    config = config_for(data_dir, model)
    if data_dir.joinpath("pixseek.db").exists():
        raise SystemExit(f"{data_dir} already holds a library; give an empty folder")
    store = Store(config.db_url)
    library = SyntheticLibrary(photos, dim, seed)
    cameras = ["Canon EOS 5D", "iPhone 13", "Pixel 7", "Nikon D750", None]
    started = time.perf_counter()
    base = dt.datetime(2005, 1, 1)
    for start in range(0, photos, CHUNK):
        count = min(CHUNK, photos - start)
        vectors = library.vectors(start, count)
        numbers = range(start, start + count)
        with store.session() as s:
            ids = store.insert_contents(s, [
                {"hash": hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=16).hexdigest(),
                 "size": 2_000_000 + i % 997, "width": 4000, "height": 3000, "format": "JPEG",
                 "taken_at": base + dt.timedelta(minutes=7 * i), "camera": cameras[i % 5]}
                for i in numbers
            ])
            store.insert_embeddings(s, model_id, ids, vectors)
            s.execute(File.__table__.insert(), [
                {"path": f"{FAKE_ROOT}/{2005 + i * 20 // photos}/{i // 1000:04d}/"
                         f"IMG_{i:07d}.jpg",
                 "size": 2_000_000 + i % 997, "mtime_ns": 1_600_000_000_000_000_000 + i,
                 "content_id": cid, "status": "ok", "updated_at": base}
                for i, cid in zip(numbers, ids, strict=True)
            ])
        if start and start % 200_000 == 0:
            log(f"  {start} photos written ({time.perf_counter() - started:.0f} s)")
    rows_s = time.perf_counter() - started
    started = time.perf_counter()
    seed_text_queries(config, model)
    index = index_for(store, model_id, config).open()
    index_s = time.perf_counter() - started
    facts = {
        "photos": photos, "model": model, "model_id": model_id, "dim": dim, "seed": seed,
        "rows_seconds": round(rows_s, 1), "index_seconds": round(index_s, 1),
        "index": index.describe(),
    }
    store.close()
    (data_dir / BUILT).write_text(json.dumps(facts, indent=1))
    log(f"built {photos} photos in {rows_s:.0f} s + index {index_s:.0f} s: {facts['index']}")
    return facts


# -- measuring ---------------------------------------------------------------------------


def evict(paths: list[Path]) -> None:
    """Drop files from the page cache (no root needed): the next read comes from disk."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def library_files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.is_file()]


def measure_command(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS of ``cmd``, measured by a helper process that runs only it."""
    helper = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
        "wall = time.perf_counter() - t\n"
        "if p.returncode: sys.exit(p.stderr.decode()[-2000:])\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(json.dumps([wall, rss]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", helper, *cmd], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    wall, rss = json.loads(proc.stdout)
    return wall, rss


def pixseek(data_dir: Path, model: str, *args: str) -> list[str]:
    exe = shutil.which("pixseek") or str(Path(sys.executable).with_name("pixseek"))
    return [exe, "--data-dir", str(data_dir), "--model", model, *args]


def new_photo(folder: Path, n: int) -> Path:
    """A JPEG no library has seen (a sample photo with a unique stripe)."""
    from PIL import Image

    from search.samples import sample_photos

    folder.mkdir(parents=True, exist_ok=True)
    source = sample_photos()[n % 10].path
    with Image.open(source) as im:
        im = im.convert("RGB").resize((1600, 1200))
        rng = np.random.default_rng(n)
        stripe = rng.integers(0, 255, (8, 1600, 3), dtype=np.uint8)
        im.paste(Image.fromarray(stripe), (0, 600))
        path = folder / f"new_{n:04d}.jpg"
        im.save(path, quality=90)
    return path


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(p95 * 1000, 2)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``pixseek serve`` in a subprocess, for /api/search and its RSS."""

    def __init__(self, data_dir: Path, model: str) -> None:
        import psutil

        self.port = free_port()
        self.proc = subprocess.Popen(
            pixseek(data_dir, model, "serve", "--port", str(self.port)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url("/favicon.ico"), timeout=5).read()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise SystemExit("pixseek serve did not start")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def search(self, text: str, k: int = 10, **extra: str) -> dict:
        query = urllib.parse.urlencode({"q": text, "k": k, **extra})
        with urllib.request.urlopen(self.url(f"/api/search?{query}"), timeout=300) as r:
            return json.loads(r.read())

    def search_image(self, path: Path) -> dict:
        boundary = "pixseekbench"
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: image/jpeg\r\n\r\n"
        ).encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(
            self.url("/api/search?k=1"), data=body, method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def peak_rss(self) -> int:
        """The server's high-water RSS (VmHWM), which a sample between queries can miss."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return self.rss()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


OPEN_PROBE = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from benchmarks.library_scale import config_for, evict, library_files
from search.store import Store
from search.vectors import index_for
data_dir, model_id = Path(sys.argv[1]), sys.argv[2]
config = config_for(data_dir, sys.argv[4])
times = []
# A reader (search, serve) cold then warm; then a writer (the indexer), which also checks
# the vector count against the store, cold.
for verify, cold in ((False, True), (False, False), (True, True)):
    if cold:
        evict(library_files(data_dir))
    store = Store(config.db_url)
    t = time.perf_counter()
    index = index_for(store, model_id, config, verify=verify).open()
    times.append(time.perf_counter() - t)
    assert not index.rebuilt, "the benchmark library's index was rebuilt on open"
    store.close()
print(json.dumps(times))
"""


def measure_open(data_dir: Path, facts: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", OPEN_PROBE, str(data_dir), facts["model_id"], str(ROOT),
         facts["model"]],
        capture_output=True, text=True,
    )
    if proc.returncode:
        raise SystemExit(f"open probe failed: {proc.stderr[-2000:]}")
    cold, warm, writer_cold = json.loads(proc.stdout)
    return {"open_cold_s": round(cold, 3), "open_warm_s": round(warm, 3),
            "open_writer_cold_s": round(writer_cold, 3)}


def measure_in_process(data_dir: Path, facts: dict, n_queries: int) -> dict:
    """Query latency through the Engine, in this process, and recall@10 of the index per
    query kind against exact search over the store's float32 vectors:

    - text: the model's own text embeddings of QUERY_TEXTS (none of them is among the texts
      the index tuned on), what people send;
    - image: library photos ("similar to this one"), and the synthetic generator's
      image-like queries;
    - filtered: text queries with a filter (camera, one year's folder), the whole engine
      path against the same search with ``exact``.
    """
    from search import query
    from search.engine import Engine
    from search.vectors import kinds

    config = config_for(data_dir, facts["model"])
    engine = Engine(config)
    library = SyntheticLibrary(facts["photos"], facts["dim"], facts["seed"])
    generated = library.queries(n_queries)
    engine.search_vector(generated[0], 10)  # open the index, warm the page cache
    times = []
    for q in generated:
        t = time.perf_counter()
        engine.search_vector(q, 10)
        times.append(time.perf_counter() - t)
    texts = engine.encoder.encode_texts(QUERY_TEXTS)
    photos = engine.store.sample_vectors(engine.model_id, 100, seed=7)
    sets = {"text": texts, "image": np.concatenate([photos, generated[:100]])}
    recall = {}
    for name, queries in sets.items():
        got = [[r.content_id for r in engine.search_vector(q, 10)] for q in queries]
        _, truth = kinds.exact_top(queries, ((ids, vecs) for _e, ids, vecs in
                                              engine.store.iter_embeddings(engine.model_id,
                                                                           chunk=16_384)), 10)
        recall[name] = round(kinds.recall(_pad(got), truth), 4)
    exact_times = []
    for q in texts[:5]:
        t = time.perf_counter()
        engine.search_vector(q, 10, exact=True)
        exact_times.append(time.perf_counter() - t)
    agree = []
    for options in ({"camera": "canon"}, {"folders": [f"{FAKE_ROOT}/2010"]}):
        for text in QUERY_TEXTS[:10]:
            fast = engine.search(query.build(text, k=10, **options)).results
            exact = engine.search(query.build(text, k=10, exact=True, **options)).results
            ids = {r.content_id for r in exact}
            agree.append(len(ids & {r.content_id for r in fast}) / max(1, len(ids)))
    recall["filtered"] = round(float(np.mean(agree)), 4)
    engine.search_text(QUERY_TEXTS[0], 10)  # load the model
    text_times = []
    for text in QUERY_TEXTS * max(1, n_queries // (2 * len(QUERY_TEXTS))):
        t = time.perf_counter()
        engine.search_text(text, 10)
        text_times.append(time.perf_counter() - t)
    engine.close()
    return {
        "query": percentiles(times),
        "exact_query": percentiles(exact_times),
        "text_query": percentiles(text_times),
        "recall_at_10": recall,
    }


def _pad(rows: list[list[int]]) -> np.ndarray:
    return np.array([r + [-1] * (10 - len(r)) for r in rows])


def _first_content_id(engine) -> int:
    from sqlalchemy import func, select

    from search.store import Content

    with engine.store.session() as s:
        return int(s.scalar(select(func.min(Content.id))))


def measure_cli(data_dir: Path, empty_dir: Path, facts: dict, work: Path, rounds: int,
                counter: list[int]) -> dict:
    """``pixseek index NEWFOLDER`` and ``pixseek search`` here and on an empty library."""
    model = facts["model"]
    out: dict[str, list] = {"index": [], "index_empty": [], "search": [], "search_empty": [],
                            "index_rss": []}
    subprocess.run(pixseek(empty_dir, model, "db", "upgrade"), check=True, capture_output=True)
    for _ in range(rounds):
        counter[0] += 1
        fresh = work / f"empty-{counter[0]}"  # each round indexes into a new empty library
        subprocess.run(pixseek(fresh, model, "db", "upgrade"), check=True, capture_output=True)
        for target, key in ((data_dir, "index"), (fresh, "index_empty")):
            counter[0] += 1
            folder = work / f"new-{counter[0]}"
            new_photo(folder, counter[0])
            wall, rss = measure_command(pixseek(target, model, "index", str(folder)))
            out[key].append(wall)
            if key == "index":
                out["index_rss"].append(rss)
        for target, key in ((data_dir, "search"), (empty_dir, "search_empty")):
            wall, _ = measure_command(pixseek(target, model, "search", QUERY_TEXTS[0], "-k", "10"))
            out[key].append(wall)
    med = {k: statistics.median(v) for k, v in out.items()}
    return {
        "index_one_s": round(med["index"], 2),
        "index_one_empty_s": round(med["index_empty"], 2),
        "index_one_ratio": round(med["index"] / med["index_empty"], 2),
        "index_one_peak_rss_mb": round(max(out["index_rss"]) / 2**20),
        "search_cli_s": round(med["search"], 2),
        "search_cli_empty_s": round(med["search_empty"], 2),
        "search_cli_ratio": round(med["search"] / med["search_empty"], 2),
    }


def measure_server(data_dir: Path, facts: dict, work: Path, n: int, counter: list[int]) -> dict:
    """/api/search latency, RSS after the queries, and how soon a new photo shows."""
    server = Server(data_dir, facts["model"])
    try:
        server.search(QUERY_TEXTS[0])  # the model loads on the first query
        times = []
        for i in range(n):
            t = time.perf_counter()
            server.search(QUERY_TEXTS[i % len(QUERY_TEXTS)])
            times.append(time.perf_counter() - t)
        rss = server.rss()
        overlap = []
        for text in QUERY_TEXTS[:12]:  # what a user sees, against exact search
            fast = {r["id"] for r in server.search(text)["results"]}
            exact = {r["id"] for r in server.search(text, exact="1")["results"]}
            overlap.append(len(fast & exact) / max(1, len(exact)))
        rss = max(rss, server.peak_rss())
        counter[0] += 1
        folder = work / f"served-{counter[0]}"
        photo = new_photo(folder, counter[0])
        subprocess.run(pixseek(data_dir, facts["model"], "index", str(folder)), check=True,
                       capture_output=True)
        indexed_at = time.perf_counter()
        expected = str(photo.resolve())
        while True:
            found = server.search_image(photo)["results"]
            # Among its paths: an earlier run may have indexed the same bytes elsewhere.
            if found and expected in found[0]["paths"]:
                catch_up = time.perf_counter() - indexed_at
                break
            if time.perf_counter() - indexed_at > 120:
                raise SystemExit("the server never showed the new photo")
        rss_after = max(server.rss(), server.peak_rss())
    finally:
        server.stop()
    return {
        "api_search": percentiles(times),
        "serve_rss_mb": round(max(rss, rss_after) / 2**20),
        "serve_catch_up_s": round(catch_up, 3),
        "api_text_overlap": round(float(np.mean(overlap)), 4),
    }


def index_facts(data_dir: Path, facts: dict) -> dict:
    """The index as ``pixseek status`` describes it now (depth, recall per query kind)."""
    from search.store import Store
    from search.vectors import index_for

    store = Store(config_for(data_dir, facts["model"]).db_url)
    try:
        return index_for(store, facts["model_id"], config_for(data_dir, facts["model"])).describe()
    finally:
        store.close()


def disk_bytes(data_dir: Path) -> dict:
    db = sum(p.stat().st_size for p in data_dir.glob("pixseek.db*"))
    index = sum(p.stat().st_size for p in data_dir.glob("index-*/*.faiss"))
    return {"db_mb": round(db / 2**20), "index_mb": round(index / 2**20)}


def library_for(out: Path, size: int, model: str) -> tuple[Path, dict]:
    slug = hashlib.sha1(model.encode()).hexdigest()[:8]
    data_dir = out / "library-scale" / f"{size}-{slug}"
    built = data_dir / BUILT
    if built.exists():
        return data_dir, json.loads(built.read_text())
    if data_dir.exists():
        shutil.rmtree(data_dir)  # an interrupted build
    log(f"building a library of {size} photos in {data_dir}")
    return data_dir, build(data_dir, size, model)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    model = resolve_model(args.model, out)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    counter = [int(time.time()) % 100_000]
    with tempfile.TemporaryDirectory(prefix="library-scale-") as tmp:
        work = Path(tmp)
        empty_dir = work / "empty-library"
        for size in sizes:
            data_dir, facts = library_for(out, size, model)
            log(f"measuring {size} photos ({facts['index'].get('kind')})")
            row = {"photos": size, "built": facts}
            row.update(measure_open(data_dir, facts))
            row.update(measure_in_process(data_dir, facts, args.queries))
            row.update(measure_filters(data_dir, facts, args.queries // 5))
            row.update(measure_cli(data_dir, empty_dir, facts, work, args.rounds, counter))
            row.update(measure_server(data_dir, facts, work, args.queries // 2, counter))
            row.update(disk_bytes(data_dir))
            row["index"] = index_facts(data_dir, facts)
            results[size] = row
            log(json.dumps(row))
    meta = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(), "model": args.model,
    }
    table = markdown(results, meta)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "library_scale.json").write_text(json.dumps({"meta": meta, "results": results},
                                                       indent=1, default=str))
    (out / "library_scale.md").write_text(table)
    return 0


def markdown(results: dict, meta: dict) -> str:
    cols = list(results)
    rows = [
        ("index kind", lambda r: r["built"]["index"].get("kind")),
        ("open, cold / warm (s)", lambda r: f"{r['open_cold_s']} / {r['open_warm_s']}"),
        ("  the indexer's open, cold, with its count check (s)",
         lambda r: r.get("open_writer_cold_s")),
        ("`pixseek index` 1 new photo (s)", lambda r: f"{r['index_one_s']}"),
        ("  same on an empty library (s), ratio",
         lambda r: f"{r['index_one_empty_s']}, {r['index_one_ratio']}x"),
        ("  its peak RSS (MB)", lambda r: r["index_one_peak_rss_mb"]),
        ("`pixseek search` (s)", lambda r: r["search_cli_s"]),
        ("  same on an empty library (s), ratio",
         lambda r: f"{r['search_cli_empty_s']}, {r['search_cli_ratio']}x"),
        ("server shows a new photo after (s)", lambda r: r["serve_catch_up_s"]),
        ("vector search + join p50 / p95 (ms)",
         lambda r: f"{r['query']['p50_ms']} / {r['query']['p95_ms']}"),
        ("whole text query p50 / p95 (ms)",
         lambda r: f"{r['text_query']['p50_ms']} / {r['text_query']['p95_ms']}"),
        ("`/api/search` p50 / p95 (ms)",
         lambda r: f"{r['api_search']['p50_ms']} / {r['api_search']['p95_ms']}"),
        ("exact search p50 (ms)", lambda r: r["exact_query"]["p50_ms"]),
        ("recall@10 vs exact: text / image / filtered queries",
         lambda r: " / ".join(str(r["recall_at_10"][k]) for k in ("text", "image", "filtered"))),
        ("`/api/search` top 10 shared with `exact=1`, text queries",
         lambda r: r.get("api_text_overlap")),
        ("index search depth, held-out recall it measured",
         lambda r: f"{r['index'].get('depth')}, {r['index'].get('recall')}"),
        ("`pixseek serve` peak RSS (MB)", lambda r: r["serve_rss_mb"]),
        ("database / index on disk (MB)", lambda r: f"{r['db_mb']} / {r['index_mb']}"),
    ]
    lines = [
        f"Library scale, model {meta['model']}, {meta['cpus']} CPUs, {meta['date']}",
        "",
        "| | " + " | ".join(f"{c:,} photos" for c in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for label, get in rows:
        lines.append(f"| {label} | " + " | ".join(str(get(results[c])) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def crossover(args: argparse.Namespace) -> int:
    """Where exact flat search stops being as fast as IVF: the ``auto`` threshold's evidence.
    Single-query p50 of each kind's real search path, on synthetic vectors in memory."""
    from search.vectors import kinds

    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        library = SyntheticLibrary(n, args.dim)
        vecs, ids = library.vectors(0, n), np.arange(n, dtype=np.int64)
        queries = library.queries(args.queries)
        row = {"photos": n, "floats": n * args.dim}
        for kind in ("flat", "ivf"):
            rng = np.random.default_rng(0)
            sample = vecs[rng.choice(n, size=min(n, kinds.train_size(kind, n) or 1),
                                     replace=False)]
            index = kinds.new_index(kind, args.dim, n, sample)
            index.add_with_ids(vecs, ids)
            depth = 0
            if kind == "ivf":
                tune_q = library.queries(2 * kinds.TUNE_QUERIES, seed=5)
                _, truth = kinds.exact_top(tune_q, [(ids, vecs)], 10)
                depth, _ = kinds.tune(kind, index, {"image": kinds.QuerySet(tune_q, truth)},
                                      10, n)
            params = kinds.params(kind, depth, None)
            times = []
            for q in queries:
                t = time.perf_counter()
                index.search(q[None], 10, params=params)
                times.append(time.perf_counter() - t)
            row[kind] = percentiles(times)["p50_ms"]
            if depth:
                row["nprobe"] = depth
            del index
        rows.append(row)
        log(json.dumps(row))
    lines = [f"Flat against IVF, {args.dim}-d, single-query p50 (ms), {os.cpu_count()} CPUs",
             "", "| photos | flat | ivf (tuned nprobe) |", "|---|---|---|"]
    lines += [f"| {r['photos']:,} | {r['flat']} | {r['ivf']} ({r.get('nprobe')}) |" for r in rows]
    print("\n".join(lines))
    return 0


FILTERS = {
    # Shares of the synthetic library: cameras cycle over 5 values, folders are years
    # (5 % each) holding folders of 1000 photos, dates run 7 minutes apart from 2005.
    "none": {},
    "camera ~20 %": {"camera": "canon"},
    "after: last half": {"after": "2012-01-01"},
    "one year folder ~5 %": {"folders": [f"{FAKE_ROOT}/2010"]},
    "one folder 0.1 %": {"folders": [f"{FAKE_ROOT}/2005/0003"]},
    "sort newest": {"sort": "newest"},
    "page 5 (offset 40)": {"offset": 40},
}


def measure_filters(data_dir: Path, facts: dict, n_queries: int) -> dict:
    """p50 of the whole text search (``Engine.search``: encode, filter, index, join,
    relevance cut) with each filter of FILTERS, in this process."""
    from search import query
    from search.engine import Engine

    engine = Engine(config_for(data_dir, facts["model"]))
    texts = (QUERY_TEXTS * n_queries)[:max(len(QUERY_TEXTS), n_queries)]
    engine.search(query.build(texts[0], k=10))  # load the model and the relevance reference
    out = {}
    for label, options in FILTERS.items():
        times, counts = [], []
        for text in texts:
            t = time.perf_counter()
            page = engine.search(query.build(text, k=10, **options))
            times.append(time.perf_counter() - t)
            counts.append(len(page.results))
        out[label] = {**percentiles(times), "min_results": min(counts)}
    engine.close()
    return {"filtered_search": out}


def filters(args: argparse.Namespace) -> int:
    out = Path(args.out)
    model = resolve_model(args.model, out)
    rows = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        data_dir, facts = library_for(out, size, model)
        rows[size] = measure_filters(data_dir, facts, args.queries)["filtered_search"]
        log(json.dumps(rows[size]))
    lines = [f"Text search with filters, p50 ms (fewest results of k=10), {args.model}", "",
             "| filter | " + " | ".join(f"{s:,} photos" for s in rows) + " |",
             "|---|" + "---|" * len(rows)]
    for label in FILTERS:
        cells = [f"{r[label]['p50_ms']} ({r[label]['min_results']})" for r in rows.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write a data dir holding N synthetic photos for model M")
    b.add_argument("dir", type=Path)
    b.add_argument("--photos", type=int, required=True)
    b.add_argument("--model", required=True, help="as pixseek --model names it, or clip-b32")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", default=str(DEFAULT_OUT), help="where clip-b32 is built")
    r = sub.add_parser("run", help="measure libraries of several sizes side by side")
    r.add_argument("--sizes", default="1000,10000,100000,1000000")
    r.add_argument("--model", default="clip-b32")
    r.add_argument("--queries", type=int, default=200, help="queries per latency figure")
    r.add_argument("--rounds", type=int, default=3, help="runs of each CLI command (median)")
    r.add_argument("--out", default=str(DEFAULT_OUT))
    c = sub.add_parser("crossover", help="flat against IVF query time by library size")
    c.add_argument("--sizes", default="8000,16000,32000,64000,128000")
    c.add_argument("--dim", type=int, default=512)
    c.add_argument("--queries", type=int, default=100)
    f = sub.add_parser("filters", help="text search p50 with filters, paging and date order")
    f.add_argument("--sizes", default="10000,1000000")
    f.add_argument("--model", default="offline")
    f.add_argument("--queries", type=int, default=40)
    f.add_argument("--out", default=str(DEFAULT_OUT))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    if args.command == "build":
        build(args.dir, args.photos, resolve_model(args.model, Path(args.out)), args.seed)
        return 0
    if args.command == "crossover":
        return crossover(args)
    if args.command == "filters":
        return filters(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
