"""The ``pixseek`` command: the one door for people.

Global options come before the subcommand:
``pixseek --data-dir ./library-data --model offline index ~/Pictures``.
Every failure a person can fix is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import sys
from pathlib import Path

import click

from search.config import Config, load_config
from search.errors import ConfigError, InputError, PixseekError
from search.wording import plural

DEMO_QUERIES = [
    "a cat",
    "a dog with its tongue out",
    "fruit on a table",
    "a rocket",
    "a butterfly on a leaf",
]


class _BadInput(click.ClickException):
    """A value a person gave (flag, input, configuration) that cannot work: exit 2, as for
    click's own usage errors, and one line without the usage block."""

    exit_code = 2


class _Group(click.Group):
    """One error path: a bad flag, input or configuration value is a usage error (exit 2),
    any other PixseekError a failure (exit 1); either is one line on stderr. So is a file
    or folder the system refused (a read-only or missing data dir): it names the path."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ConfigError, InputError) as exc:
            raise _BadInput(str(exc)) from None
        except PixseekError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            if exc.filename is None:  # not about a path: a bug, keep its traceback
                raise
            logging.getLogger("pixseek").info("details", exc_info=True)  # shown with -v
            raise click.ClickException(f"{exc.strerror or exc}: {exc.filename}") from None


def _quiet_libraries() -> None:
    # Environment, not calls: importing transformers here would cost every command seconds.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' bars too
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:  # imported already (in-process callers): it read them
        from transformers.utils import logging as hf_logging

        if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":
            hf_logging.disable_progress_bar()


def _config(ctx: click.Context, **flags: object) -> Config:
    """The configuration, with this subcommand's flags (dotted keys) validated the same way
    as the global ones: a bad value is one message naming the flag's key."""
    flags = {key.replace("__", "."): value for key, value in flags.items() if value is not None}
    if not flags:
        return ctx.obj["config"]
    return load_config(ctx.obj["config_path"], overrides={**ctx.obj["overrides"], **flags})


def _caption_set_options(command):
    """``--captions`` and ``--images``: a captioned image set, as bench retrieval and
    finetune both read one."""
    command = click.option(
        "--images", "images_dir", required=True, type=click.Path(),
        help="Folder the caption file's image paths are relative to.")(command)
    return click.option(
        "--captions", "captions_file", required=True, type=click.Path(),
        help="Karpathy split JSON, COCO captions JSON, or CSV/TSV of image,caption.")(command)


def _local_option(command):
    """``--local``: run in this process even when a ``pixseek serve`` for the same library
    and model is running (by default the command asks it: no model to load)."""
    return click.option(
        "--local", is_flag=True,
        help="Run in this process, not through a running pixseek serve.")(command)


def _echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), envvar="PIXSEEK_CONFIG",
    help="Configuration file (default ./config.yaml if present).",
)
@click.option("--data-dir", help="Where the database and vector indexes live.")
@click.option("--model", help="A preset (fast, best, multilingual: pixseek models), offline, a "
                               "hub id, an OpenAI alias (ViT-B/32) or a local folder.")
@click.option("--device", help="auto, cpu, cuda or mps.")
@click.option(
    "--precision",
    help="auto, fp32, bf16, fp16 or int8 (auto: the fastest faithful one, measured once).",
)
@click.option(
    "--runtime",
    help="auto, torch, onnxruntime or openvino (auto: the fastest faithful runtime and "
         "precision, measured once).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@click.pass_context
def cli(ctx: click.Context, config_path, data_dir, model, device, precision, runtime,
        verbose) -> None:
    """pixseek: semantic search over your photos."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    _quiet_libraries()
    overrides = {
        "data_dir": data_dir,
        "model.name": model,
        "model.device": device,
        "model.precision": precision,
        "model.runtime": runtime,
    }
    try:
        config = load_config(config_path, overrides=overrides)
    except ConfigError as exc:
        raise _BadInput(str(exc)) from None
    ctx.obj = {"config": config, "config_path": config_path, "overrides": overrides}


def _ray_options(command):
    """``--ray [ADDRESS]`` and ``--ray-workers N``: decode and encode on a Ray cluster."""
    command = click.option(
        "--ray-workers", type=int,
        help="Encoding actors on the Ray cluster, each holding the model (default 1).")(command)
    return click.option(
        "--ray", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
        help="Decode and encode on a Ray cluster: ADDRESS is auto (the cluster this host "
             "belongs to) or ray://head:10001; without one, a local cluster is started. "
             "Needs pip install 'pixseek[ray]'.")(command)


def _index(config: Config, paths: list[str]):
    from indexer.session import open_indexer

    with open_indexer(config) as indexer:
        return indexer.index(paths)


def _roots(config: Config, paths: tuple[str, ...]) -> list[str]:
    roots = list(paths) or [str(p) for p in config.library.roots]
    if not roots:
        raise InputError("nothing to index: give folders, or set library.roots in config.yaml")
    return roots


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--batch-size", type=int, help="Images per model call.")
@click.option("--workers", type=int, help="Decode worker processes (0: in this process).")
@_ray_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.pass_context
def index(ctx: click.Context, paths, batch_size, workers, ray, ray_workers, as_json) -> None:
    """Index photos under PATHS (default: library.roots from the configuration)."""
    config = _config(ctx, model__batch_size=batch_size, indexer__decode_workers=workers,
                     indexer__ray=ray, indexer__ray_workers=ray_workers)
    summary = _index(config, _roots(config, paths))
    if as_json:
        _echo_json(summary.as_dict())
        return
    for failure in summary.failures[:20]:
        click.echo(f"skipped {failure['path']}: {failure['error']}", err=True)
    if len(summary.failures) > 20:
        click.echo(f"... and {len(summary.failures) - 20} more (pixseek status)", err=True)
    click.echo(f"{plural(summary.seen, 'file')}: {summary.line()}")


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.pass_context
def watch(ctx: click.Context, paths) -> None:
    """Index PATHS (default: library.roots), then keep them indexed as files change."""
    from indexer.session import open_indexer
    from indexer.watch import Watcher

    config = _config(ctx)
    roots = _roots(config, paths)
    for root in roots:
        if not Path(root).expanduser().is_dir():
            raise InputError(f"not a folder: {root}")

    def report(folders: list[str], summary) -> None:
        if summary.changed:
            click.echo(f"{', '.join(folders)}: {summary.line()}")

    with open_indexer(config) as indexer:
        watcher = Watcher(indexer, roots, on_run=report)

        def graceful(signum: int, _frame) -> None:
            # First signal: finish the chunk in flight and stop. A second Ctrl-C: now.
            watcher.stop()
            signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM
                          else signal.default_int_handler)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, graceful)
        click.echo(f"watching {', '.join(roots)} (Ctrl-C to stop)", err=True)
        watcher.run()
    click.echo("stopped", err=True)


def _print_results(results, as_json: bool) -> None:
    if as_json:
        _echo_json([r.as_dict() for r in results])
        return
    if not results:
        click.echo("no indexed photos yet: run pixseek index FOLDER first", err=True)
    for r in results:
        click.echo(f"{r.score:.4f}  {r.path}")


def _print_page(page, as_json: bool, dated: bool = False) -> None:
    """Results as ``score  path`` lines (stdout stays one result per line for scripts),
    ``score  date time  path`` when sorted by date; where strong matches end, a line on
    stderr says so."""
    if as_json:
        _print_results(page.results, True)
        return
    if not page.results:
        click.echo("no photos match" + (" on this page" if page.offset else ""), err=True)
    elif page.strong == 0 and page.offset == 0:
        click.echo("nothing matches well; the nearest photos:", err=True)
    shown_line = page.strong == 0
    for r in page.results:
        if not r.strong and not shown_line:
            click.echo("-- weaker matches below --", err=True)
            shown_line = True
        when = f"{r.date:%Y-%m-%d %H:%M}  " if dated and r.date else ""
        click.echo(f"{r.score:.4f}  {when}{r.path}")
    # As on the page: with nothing strong on the first page, more of the same is no help.
    if page.next_offset is not None and not (page.strong == 0 and page.offset == 0):
        click.echo(f"(more: --offset {page.next_offset})", err=True)


@cli.command()
@click.argument("query", required=False)
@click.option("-k", "k", metavar="N", help="How many results (1 to 1000, search.limits.MAX_K).")
@click.option("--image", "images", multiple=True, metavar="[W:]PATH",
              help="Search by example: photos like this image (repeatable).")
@click.option("--similar", "similar", multiple=True, metavar="[W:]ID_OR_PATH",
              help="Photos like this library photo: a result's id or an indexed path.")
@click.option("--not", "negatives", multiple=True, metavar="[W:]TEXT",
              help="Push matches for TEXT away (repeatable).")
@click.option("--after", metavar="DATE",
              help="Taken on DATE or later (EXIF time, else file time).")
@click.option("--before", metavar="DATE", help="Taken before DATE (EXIF time, else file time).")
@click.option("--folder", "folders", multiple=True, type=click.Path(file_okay=False),
              help="Only photos under this folder (repeatable).")
@click.option("--camera", metavar="TEXT", help="Only photos whose camera name contains TEXT.")
@click.option("--text", "in_text", metavar="WORDS",
              help="Photos whose text (read by OCR: signs, receipts, screenshots) holds "
                   "WORDS; alone, or beside QUERY.")
@click.option("--place", "places", multiple=True, metavar="NAME",
              help="Only photos taken in this city, region or country (repeatable: any).")
@click.option("--near", metavar="LAT,LON[,KM]",
              help="Only photos taken within KM (default 5) of this GPS position.")
@click.option("--tag", "tags", multiple=True, metavar="NAME",
              help="Only photos with this tag (repeat: all of them).")
@click.option("--not-tag", "not_tags", multiple=True, metavar="NAME",
              help="Only photos without this tag.")
@click.option("--offset", type=click.IntRange(0), default=0, help="Skip this many results.")
@click.option("--min-score", type=click.FloatRange(-1, 1), help="Drop results below this cosine.")
@click.option("--sort", type=click.Choice(["relevance", "newest", "oldest"]),
              default="relevance", help="Date orders apply among the strong matches.")
@click.option("--exact", is_flag=True,
              help="Exact search, bypassing the approximate index (to check its recall).")
@click.option("--no-collapse", is_flag=True,
              help="Show every near-duplicate (by default a group is one result).")
@click.option("--literal", is_flag=True,
              help="Search QUERY as typed: read no dates, places or cameras out of it.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, best first.")
@_local_option
@click.pass_context
def search(ctx: click.Context, query, k, images, similar, negatives, after, before, folders,
           camera, in_text, places, near, offset, min_score, sort, exact, no_collapse,
           literal, as_json, local, tags=(), not_tags=()) -> None:
    """Find photos matching QUERY text, example images or library photos.

    \b
    Terms add up, each with an optional WEIGHT: prefix (default 1):
      pixseek search "2:golden retriever + puppy - leash" --image 0.5:pool.jpg --not people
    """
    if not local:
        from pixseek import client

        served = client.search(
            _config(ctx), query, images=images, similar=similar, folders=folders,
            negatives=negatives, after=after, before=before, camera=camera, k=k, offset=offset,
            min_score=min_score, sort=sort, exact=exact, collapse=not no_collapse,
            in_text=in_text, places=places, near=near, tags=tags,
            not_tags=not_tags, parse=not literal)
        if served is not None:
            if served.understood:
                click.echo(_understood_line(served.understood), err=True)
            _show_search(served, served.empty, as_json, dated=sort != "relevance")
            return
    from functools import partial

    from search import query as queries
    from search import understand
    from search.engine import Engine

    build = partial(
        queries.build,
        query, images=images, similar=similar, negatives=negatives, after=after, before=before,
        folders=folders, camera=camera, k=k, offset=offset, min_score=min_score, sort=sort,
        exact=exact, collapse=not no_collapse, in_text=in_text, places=places, near=near,
        tags=tags, not_tags=not_tags,
    )
    request = build()  # a bad flag fails before the library opens
    engine = Engine(_config(ctx))
    try:
        if not literal and query and query.strip():
            request = build(vocabulary=understand.vocabulary(engine.store, engine.model_id))
            if understand.anything(request.understood):
                click.echo(_understood_line(request.understood), err=True)
        page = engine.search(request)
        empty = engine.vectors.count == 0
    finally:
        engine.close()
    _show_search(page, empty, as_json, dated=sort != "relevance")


def _show_search(page, empty: bool, as_json: bool, dated: bool = False) -> None:
    """A search's page as the command prints it, from this process or from a server."""
    if empty:
        _print_results([], as_json)
        return
    _print_page(page, as_json, dated=dated)
    folded = sum(len(r.duplicates) for r in page.results)
    if folded and not as_json:
        click.echo(f"({plural(folded, 'near-duplicate')} folded into these results: --no-collapse "
                   "shows them)", err=True)


def _understood_line(understood: dict) -> str:
    """What was read from the query, one line: 'understood: "dogs", 2019-01-01 to ...'."""
    parts = [f"text {understood['text']!r}"] if understood["text"] else []
    if understood["after"]:
        parts.append(f"after {understood['after']}")
    if understood["before"]:
        parts.append(f"before {understood['before']}")
    parts += [f"place {p}" for p in understood["places"]]
    parts += [f"camera {c}" for c in understood["cameras"]]
    return "understood: " + ", ".join(parts) + " (--literal searches the words as typed)"


@cli.command()
@click.argument("image", type=click.Path())
@click.argument("labels", nargs=-1, required=True)
@click.option("--templates", metavar="imagenet|FILE",
              help="Average each label over prompt templates: CLIP's 80 ImageNet ones, or a "
                   "file with one template per line, {} where the label goes.")
@click.option("--temperature", type=click.FloatRange(0, min_open=True), metavar="T",
              help="Softmax of cosine / T (CLIP's own is 0.01). Default: the temperature "
                   "calibrated for this model on the sample photos.")
@click.option("--json", "as_json", is_flag=True)
@_local_option
@click.pass_context
def classify(ctx: click.Context, image, labels, templates, temperature, as_json, local) -> None:
    """Zero-shot classification of IMAGE among LABELS (softmax of cosine / temperature,
    the temperature calibrated per model)."""
    ranked = None
    if not local:
        from pixseek import client

        ranked = client.classify(_config(ctx), image, list(labels), templates, temperature)
    if ranked is None:
        from search.engine import Engine
        from search.prompts import load_templates

        prompts = load_templates(templates)  # a bad file fails before the model loads
        engine = Engine(_config(ctx))
        try:
            ranked = engine.classify(image, list(labels), prompts, temperature=temperature)
        finally:
            engine.close()
    if as_json:
        _echo_json([{"label": label, "probability": p} for label, p in ranked])
        return
    width = max(len(label) for label, _ in ranked)
    for label, p in ranked:
        click.echo(f"{label:<{width}}  {p:6.2%}")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@_local_option
@click.pass_context
def status(ctx: click.Context, as_json, local) -> None:
    """What is indexed, what failed and why, per model."""
    info = None
    if not local:
        from pixseek import client

        info = client.status(_config(ctx))
    if info is None:
        from search.engine import Engine

        engine = Engine(_config(ctx))
        try:
            info = json.loads(json.dumps(engine.status(), default=str))  # as a server sends it
        finally:
            engine.close()
    if as_json:
        _echo_json(info)
        return
    click.echo(f"database:   {info['database']}")
    click.echo(f"model:      {info['model']}")
    prec = info["precision"]
    in_use = prec["in_use"] or "not chosen yet"
    setting = f" (setting {prec['setting']})" if prec["setting"] != prec["in_use"] else ""
    click.echo(f"precision:  {in_use}{setting}: {prec['reason']}")
    rt = info["runtime"]
    rt_setting = f" (setting {rt['setting']})" if rt["setting"] != rt["in_use"] else ""
    click.echo(f"runtime:    {rt['in_use'] or 'not chosen yet'}{rt_setting}")
    click.echo(
        f"files:      {info['files']} seen, {info['indexed']} indexed, {info['failed']} failed, "
        f"{info['pending']} waiting for this model"
    )
    from search.index_line import describe_line

    click.echo(f"index:      {describe_line(info['index'], info['index_current'])}")
    text = info["ocr"]
    if text["enabled"]:
        click.echo(f"text:       read in {plural(text['read'], 'photo')}, {text['failed']} failed "
                   f"({text['engine']})")
    else:
        why = "not installed: pip install 'pixseek[ocr]'" if not text["installed"] else "off"
        click.echo(f"text:       not read from photos ({why}; ocr.enabled)")
    for model, m in info["models"].items():
        click.echo(f"  {model}: {plural(m['vectors'], 'vector')}, "
                   f"{plural(m['files_indexed'], 'file')}")
    for f in info["failures"]:
        click.echo(f"  failed {f['path']}: {f['error']}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --token.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", envvar="PIXSEEK_TOKEN",
              help="Access token every request must carry (or PIXSEEK_TOKEN).")
@click.option("--new-token", is_flag=True, help="Make a random token and print the link.")
@click.pass_context
def serve(ctx: click.Context, host, port, token, new_token) -> None:
    """Serve the search page and JSON API (http://127.0.0.1:8000 by default)."""
    from webui.serve import generate_token, run

    if new_token:
        token = generate_token()
    run(_config(ctx), host=host, port=port, token=token)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
@click.pass_context
def gc(ctx: click.Context, as_json) -> None:
    """Delete photos no file shows any more, with their vectors, and compact the index.

    Indexing does this for the files it sees go; gc checks the whole library (for example
    after files were deleted while pixseek was not running and no index run followed).
    """
    from indexer.session import locked_store
    from search.encoders import canonical_model_id
    from search.library import adopt_model
    from search.vectors import index_for

    config = _config(ctx)
    with locked_store(config) as store:
        collected = store.collect_orphans()
        config = adopt_model(config, store)
        index = index_for(store, canonical_model_id(config.model.name), config).open()
        compacted = index.persist(force=True)
        report = {
            "contents": collected.contents,
            "vectors": collected.vectors,
            "index_compacted": compacted,
            "index": index.describe(),
        }
    if as_json:
        _echo_json(report)
        return
    per_model = ", ".join(f"{n} of {m}" for m, n in sorted(collected.vectors.items()))
    click.echo(
        f"removed {plural(collected.contents, 'photo')} no file shows any more"
        + (f" and their vectors ({per_model})" if per_model else "")
    )
    if compacted:
        click.echo(f"rewrote the vector index: {plural(index.count, 'vector')}, none pending")


@cli.command()
@click.option("--threshold", type=click.FloatRange(0, 1),
              help="Cosine at or above which photos are near-duplicates (default: the "
                   "model's own, see search/duplicates.py).")
@click.option("--move-to", "move_to", type=click.Path(file_okay=False),
              help="Move every photo but the one to keep into DIR (paths relative to the "
                   "library root kept), with a journal that --undo reads.")
@click.option("--undo", "journal", type=click.Path(dir_okay=False),
              help="Put back every photo a --move-to journal lists.")
@click.option("--json", "as_json", is_flag=True, help="Print the groups (or what moved) as JSON.")
@click.pass_context
def duplicates(ctx: click.Context, threshold, move_to, journal, as_json) -> None:
    """Groups of near-duplicate photos: re-saves, resizes, small crops, edits, bursts.

    \b
    Each group keeps the photo with the most pixels, then the largest file, then the
    earliest date. Nothing is ever deleted:
      pixseek duplicates                      # list the groups, the keeper marked
      pixseek duplicates --move-to ~/dups     # move the others out, with a journal
      pixseek duplicates --undo ~/dups/pixseek-duplicates-journal-<time>.json
    """
    from search import duplicates as dups

    if journal and (move_to or threshold is not None):
        raise InputError("--undo puts a journal's photos back: give it alone")
    if journal:
        report = dups.undo(journal)
        if as_json:
            _echo_json(report)
        else:
            click.echo(f"put back {plural(report['restored'], 'photo')}"
                       + (f" ({report['already_back']} were back already)"
                          if report["already_back"] else ""))
            for item in report["conflicts"] + report["missing"]:
                click.echo(f"  left {item['moved_to']}: {item['reason']}", err=True)
        left = len(report["conflicts"]) + len(report["missing"])
        if left:
            raise click.ClickException(f"{plural(left, 'photo was', 'photos were')} left where "
                                       "they are (above); "
                                       "nothing was overwritten")
        return
    from search.engine import Engine

    config = _config(ctx)
    engine = Engine(config)
    try:
        index = engine.vectors
        if index.count == 0:
            raise InputError(f"no photos are indexed for the model {engine.model_id} yet: "
                             "run pixseek index FOLDER first")
        cut = dups.threshold_for(engine.model_id) if threshold is None else threshold
        groups = dups.find_groups(engine.store, index, engine.model_id, cut)
        roots = dups.library_roots(config.library.roots, engine.store) if move_to else []
    finally:
        engine.close()
    if move_to:
        inside = [r for r in roots if Path(move_to).expanduser().resolve().is_relative_to(r)]
        if inside:
            click.echo(f"note: {move_to} is inside the library ({inside[0]}): the next index "
                       "run will index the moved photos there", err=True)
        _path, report = dups.move_others(groups, move_to, roots, model_id=engine.model_id,
                                         threshold=cut)
        if as_json:
            _echo_json(report)
            return
        click.echo(f"moved {plural(report['moved'], 'photo')} from "
                   f"{plural(len(groups), 'group')} into {report['dest']}")
        for item in report["skipped"]:
            click.echo(f"  skipped {item['path']}: {item['reason']}", err=True)
        click.echo(f"journal: {report['journal']} (pixseek duplicates --undo JOURNAL puts "
                   "them back)", err=True)
        if report["failed"]:
            raise click.ClickException(f"{plural(report['failed'], 'photo')} could not be moved; "
                                       "the journal lists why")
        return
    if as_json:
        _echo_json([g.as_dict() for g in groups])
        return
    for n, group in enumerate(groups):
        if n:
            click.echo("")
        keep = group.keep
        click.echo(f"keep    {keep.path}  ({keep.width}x{keep.height}, {keep.size} bytes)")
        for other in group.others:
            click.echo(f"{other.similarity:.4f}  {other.path}  "
                       f"({other.width}x{other.height}, {other.size} bytes)")
    others = sum(len(g.others) for g in groups)
    calibrated = "" if dups.calibrated(engine.model_id) or threshold is not None else (
        ", not calibrated for this model")
    click.echo(f"{plural(len(groups), 'group')} of near-duplicates, {plural(others, 'photo')} "
               f"besides the ones to keep (threshold {cut:g}{calibrated})", err=True)


@cli.command()
@_caption_set_options
@click.option("--model", "model", required=True,
              help="Checkpoint to start from (folder, hub id, alias, preset fast), or a size "
                   "name for random weights: tiny, small or vit-b-32.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the trained model (a normal transformers checkpoint).")
@click.option("--epochs", type=int, default=5, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True,
              help="Pairs per step; more gives the loss more negatives.")
@click.option("--lr", type=float, help="Peak learning rate (default: by --train).")
@click.option("--train", "mode", type=click.Choice(["all", "text", "image", "proj", "lora"]),
              default="all", show_default=True, help="What learns.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Share of images held out for validation.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--split", default="train", show_default=True,
              help="Karpathy split to train on ('all' for every image).")
@click.option("--resume", is_flag=True, help="Go on with the run in --out after a stop.")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Stop after the epoch that passes this much time.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False),
              help="Also write training.json here.")
@click.pass_context
def finetune(ctx: click.Context, captions_file, images_dir, model, out_dir, epochs, batch_size,
             lr, mode, val_fraction, seed, split, resume, max_minutes, json_file) -> None:
    """Train a CLIP model contrastively on captioned images; keep the best epoch."""
    from pixseek.bench import write_atomic
    from training.finetune import SUMMARY, FinetuneArgs
    from training.finetune import finetune as train

    args = FinetuneArgs(
        captions=Path(captions_file), images=Path(images_dir), model=model, out=Path(out_dir),
        epochs=epochs, batch_size=batch_size, lr=lr, train=mode, val_fraction=val_fraction,
        seed=seed, split=None if split == "all" else split, resume=resume,
        max_minutes=max_minutes,
    )
    run = train(args, _config(ctx), say=click.echo)
    best = "the starting model" if run.best_epoch == 0 else f"epoch {run.best_epoch}"
    click.echo(f"Kept {best} in {out_dir}; use it with --model {out_dir}")
    if json_file:
        write_atomic(Path(json_file), (Path(out_dir) / SUMMARY).read_text())


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Create or upgrade the schema to the latest revision."""
    from search.migrate import current_revision
    from search.store import Store

    store = Store(_config(ctx).db_url)
    click.echo(f"database at revision {current_revision(store.engine)}")
    store.close()


@cli.group()
def bench() -> None:
    """Benchmarks: retrieval Recall@K against captioned image sets."""


@bench.command()
@_caption_set_options
@click.option("--model", "models", multiple=True,
              help="Model to evaluate (a preset, hub id, alias or folder); repeat for "
                   "several (default: the configured model).")
@click.option("--split", default="test", show_default=True,
              help="Karpathy split to use ('all' for every image).")
@click.option("--dataset", help="flickr30k or coco, for --compare (inferred from Karpathy files).")
@click.option("--compare", "with_published", is_flag=True,
              help="Show published numbers for known models beside ours.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Write results here.")
@click.option("--markdown", "markdown_file", type=click.Path(dir_okay=False),
              help="Write a markdown table here.")
@_ray_options
@click.pass_context
def retrieval(ctx: click.Context, captions_file, images_dir, models, split, dataset,
              with_published, json_file, markdown_file, ray, ray_workers) -> None:
    """Text-to-image and image-to-text Recall@1/5/10 and median rank, per model."""
    from pixseek.bench import results_json, run_retrieval, write_atomic
    from search.evaluation.report import format_markdown, format_table

    config = _config(ctx, indexer__ray=ray, indexer__ray_workers=ray_workers)
    results, comparisons = run_retrieval(
        config, Path(captions_file), Path(images_dir), list(models) or [config.model.name],
        split=None if split == "all" else split, dataset=dataset,
        with_published=with_published,
    )
    click.echo(
        f"{results['dataset']}: {results['n_images']} images, {results['n_captions']} captions"
    )
    click.echo(format_table(results, comparisons if with_published else None), nl=False)
    if with_published and not comparisons:
        click.echo("no published numbers for these models on this dataset", err=True)
    if json_file:
        write_atomic(Path(json_file), results_json(results, comparisons))
    if markdown_file:
        write_atomic(Path(markdown_file), format_markdown(results, comparisons or None))


@bench.command()
@click.argument("dest", type=click.Path(file_okay=False))
def samples(dest) -> None:
    """Copy the sample photos and their captions.csv into DEST (a captioned test set)."""
    from search.samples import copy_sample_photos, write_captions_csv

    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    copied = copy_sample_photos(folder)
    csv = write_captions_csv(folder)
    click.echo(f"{plural(len(copied), 'photo')} and {csv}")


@bench.command()
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--pairs", default=1000, show_default=True, type=int,
              help="How many captioned images to draw.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same set.")
@click.option("--test-fraction", default=0.2, show_default=True, type=float,
              help="Share of images held out as the test split.")
def synth(dest, pairs, seed, test_fraction) -> None:
    """Draw a synthetic captioned set (coloured shapes) into DEST, to train or test offline."""
    import shlex

    from training.synth import render_synth

    captions = render_synth(Path(dest), pairs, seed=seed, test_fraction=test_fraction)
    images = captions.parent / "images"
    click.echo(f"wrote {pairs} images and {captions}; try: pixseek bench retrieval "
               f"--captions {shlex.quote(str(captions))} --images {shlex.quote(str(images))} "
               "--split test")


def _this_command() -> str:
    """pixseek as this process was started, in a form a person can paste: the bare name
    only where PATH finds this very script (after ``make demo`` it is .venv/bin/pixseek)."""

    def short(path: str) -> str:
        full = os.path.abspath(path)
        rel = os.path.relpath(full)
        return shlex.quote(full if rel.startswith("..") else os.path.join(".", rel)
                           if os.sep not in rel else rel)

    script = sys.argv[0] if sys.argv else ""
    if Path(script).name == "pixseek" and os.path.isfile(script):
        on_path = shutil.which("pixseek")
        if on_path and os.path.samefile(on_path, script):
            return "pixseek"
        return short(script)
    return f"{short(sys.executable)} -m pixseek"


@cli.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Index the sample photos that installed packages ship, then run a few searches."""
    from search import query as queries
    from search.engine import Engine
    from search.samples import copy_sample_photos

    config = _config(ctx)
    folder = config.data_path / "samples"
    copied = copy_sample_photos(folder)
    click.echo(f"{plural(len(copied), 'sample photo')} in {folder}")
    summary = _index(config, [str(folder)])
    click.echo(f"indexed: {summary.line()}")
    engine = Engine(config)
    try:
        for query in DEMO_QUERIES:
            click.echo(f'\n"{query}"')
            for r in engine.search(queries.build(query, k=3)).results:
                mark = "strong" if r.strong else "weak"
                click.echo(f"  {r.score:.3f}  {mark:<6}  {Path(r.path).name}")
    finally:
        engine.close()
    click.echo("\n(strong: a clear match for the words; weak: only the nearest there is)")
    prefix = (f"{_this_command()} --data-dir {shlex.quote(str(config.data_dir))} "
              f"--model {shlex.quote(config.model.name)}")
    click.echo(f'\nTry your own: {prefix} search "a red motorcycle"')
    click.echo(f"In a browser:  {prefix} serve   (then open http://127.0.0.1:8000)")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of the checks.")
@click.pass_context
def doctor(ctx: click.Context, as_json) -> None:
    """Check the install, model, database, index and disk; exit 1 when a check fails.

    Read-only: it loads no model, reaches no network and upgrades nothing.
    """
    from pixseek import doctor as checkup

    obj = ctx.obj
    facts = checkup.Facts(obj["config"], obj["config_path"], obj["overrides"])
    results = checkup.run_checks(facts)
    if as_json:
        _echo_json(results)
    else:
        for result in results:
            click.echo(checkup.format_line(result))
    if any(r["status"] == checkup.FAIL for r in results):
        sys.exit(1)  # not ctx.exit: main() runs click with standalone_mode=False


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the presets as JSON.")
def models(as_json) -> None:
    """Model presets for --model: published quality, speed measured here, and which to
    pick on a CPU. Reads the Hugging Face cache only (no download, no model load)."""
    from huggingface_hub import try_to_load_from_cache

    from search.encoders.presets import PRESETS, recommendation

    rows = []
    for p in PRESETS.values():
        # A str is a cached file; anything else means not downloaded.
        cached = isinstance(try_to_load_from_cache(p.hub_id, "config.json"), str)
        rows.append({**p.as_dict(), "downloaded": cached})
    advice = recommendation()
    if as_json:
        _echo_json({"presets": rows, "recommendation": advice})
        return

    def quality(row: dict) -> str:
        shown = [f"{f['metric']} {f['value']}" for f in row["published"] if f["value"]]
        return "; ".join(shown) or "not published"

    def speed(row: dict) -> str:
        s = row["speed"]
        if not s:
            return "not measured"
        img = ", ".join(f"{k} {v:g}" for k, v in s["images_per_s"].items())
        txt = ", ".join(f"{k} {v:g}" for k, v in s["texts_per_s"].items())
        return f"photos/s {img}; queries/s {txt}"

    for row in rows:
        needs = f" (needs {', '.join(row['needs'])})" if row["needs"] else ""
        cached = "downloaded" if row["downloaded"] else "not downloaded"
        click.echo(f"{row['name']:<13}{row['hub_id']}  {row['image_size']} px, "
                   f"{row['params_m']}M params, {cached}{needs}")
        click.echo(f"{'':<13}{row['description']}")
        click.echo(f"{'':<13}published: {quality(row)}")
        click.echo(f"{'':<13}here: {speed(row)}")
    speeds = [r["speed"] for r in rows if r["speed"]]
    if speeds:
        s = speeds[0]
        note = f"; {s['note']}" if s["note"] else ""
        click.echo(f"(speed: random weights in the checkpoint's shape, {s['cpu']}, "
                   f"{s['threads']} threads, {s['date']}: {s['command']}{note})")
    click.echo(advice)


from pixseek.tag_cli import tag, tags  # noqa: E402 (tags taught by example)

cli.add_command(tag)
cli.add_command(tags)


def main() -> None:
    """The console script. Click's usage errors become one line too (no usage block)."""
    try:
        cli.main(prog_name="pixseek", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (pixseek {exc.ctx.info_name} -h)" if exc.ctx and exc.ctx.parent else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
