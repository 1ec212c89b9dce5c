"""``pixseek tag`` and ``pixseek tags``: tags taught by example (``search.tags``).

``tag`` takes lists after its flags (``--add a.jpg b.jpg --not c.jpg``), which click's
options cannot, so its arguments are read here.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import click

from search.errors import InputError

_USAGE = """Teach, inspect or remove the tag NAME.

\b
  pixseek tag NAME --add ID_OR_PATH... [--not ID_OR_PATH...] [--text "a receipt"]
  pixseek tag NAME --text "a receipt" [--temperature T]
                                                prompts only: softmax of cosine / T against
                                                generic captions (default: the temperature
                                                calibrated for the model, as classify's)
  pixseek tag NAME --suggest [-k 20] [--json]   the uncertain photos to confirm or reject
  pixseek tag NAME --list [--json]              members: id, path, score
  pixseek tag NAME --export [--xmp]             member paths, one per line; --xmp also
                                                adds NAME to each photo's PHOTO.xmp sidecar
                                                (dc:subject, for digiKam, darktable, Lightroom)
  pixseek tag NAME --delete

Repeated calls add examples; each call refits the tag and applies it to the whole library."""

_ACTIONS = ("--suggest", "--list", "--export", "--delete")


def _parse(args: tuple[str, ...]) -> dict:
    got: dict = {"add": [], "not": [], "text": [], "k": 20, "json": False, "action": None,
                 "xmp": False, "temperature": None}
    into: list | None = None
    items = list(args)
    while items:
        word = items.pop(0)
        if word in ("--add", "--not"):
            into = got[word[2:]]
        elif word == "--text":
            if not items:
                raise InputError("--text needs the words, e.g. --text 'a receipt'")
            got["text"].append(items.pop(0))
            into = None
        elif word == "-k":
            value = items.pop(0) if items else ""
            if not value.isdigit() or int(value) < 1:
                raise InputError(f"-k needs a positive number, not {value!r}")
            got["k"] = int(value)
        elif word == "--temperature":  # its range is checked by tags.teach
            value = items.pop(0) if items else ""
            try:
                got["temperature"] = float(value)
            except ValueError:
                raise InputError(f"--temperature needs a number above 0, not {value!r}") from None
            into = None
        elif word == "--json":
            got["json"] = True
        elif word == "--xmp":
            got["xmp"] = True
        elif word in _ACTIONS:
            if got["action"] not in (None, word):
                raise InputError(f"give one of {', '.join(_ACTIONS)}, not {got['action']} "
                                 f"and {word}")
            got["action"] = word
        elif word.startswith("--"):
            raise InputError(f"tag: no such option {word} (pixseek tag -h)")
        elif into is None:
            raise InputError(f"tag: {word!r} follows no --add or --not (pixseek tag -h)")
        else:
            into.append(word)
    teaching = got["add"] or got["not"] or got["text"]
    if got["action"] and teaching:
        raise InputError(f"{got['action']} cannot be combined with --add, --not or --text")
    if got["temperature"] is not None and not got["text"]:
        raise InputError("--temperature goes with --text: pixseek tag NAME --text 'a receipt' "
                         "--temperature 0.05")
    if got["xmp"] and got["action"] != "--export":
        raise InputError("--xmp goes with --export: pixseek tag NAME --export --xmp")
    if not got["action"] and not teaching:
        raise InputError("say what to do: --add, --not, --text, --suggest, --list, --export "
                         "or --delete (pixseek tag -h)")
    return got


@contextmanager
def _library(ctx: click.Context):
    from search.encoders import canonical_model_id
    from search.library import adopt_model
    from search.store import Store

    config = ctx.obj["config"]  # the global options (tag takes no config flags of its own)
    with Store(config.db_url) as store:
        config = adopt_model(config, store)  # the library's own model unless one is chosen
        model = canonical_model_id(config.model.name)
        encoder = []

        def load():
            if not encoder:
                from search.encoders import load_encoder

                encoder.append(load_encoder(config.model, cache_dir=config.data_path))
            return encoder[0]

        def encode_texts(texts: list[str]):
            return load().encode_texts(texts)

        def logit_scale() -> float:  # the calibration classify uses, cached per model
            from search.calibration import logit_scale

            return logit_scale(load())

        yield store, model, encode_texts, logit_scale


def _print(rows: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['score']:.3f}  {row['id']:>7}  {row['path']}")


def _sidecar(path: str, name: str) -> bool:
    from search.xmp import SidecarError, add_subject, sidecar_path

    try:
        add_subject(path, name)
        return True
    except (SidecarError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        click.echo(f"sidecar {sidecar_path(path)} left as it was: {reason}", err=True)
        return False


@click.command(context_settings={"ignore_unknown_options": True}, help=_USAGE)
@click.argument("name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def tag(ctx: click.Context, name: str, args: tuple[str, ...]) -> None:
    from search import tags as taglib

    got = _parse(args)
    name = taglib.check_name(name)
    with _library(ctx) as (store, model, encode_texts, logit_scale):
        action = got["action"]
        if action is None:
            info = taglib.teach(store, model, encode_texts, name, got["add"], got["not"],
                                got["text"], logit_scale, got["temperature"])
            if got["json"]:
                click.echo(json.dumps(info, indent=2))
            else:
                click.echo(f"tag {info['name']!r} (version {info['version']}): "
                           f"{len(info['positives'])} examples, {len(info['negatives'])} "
                           f"counter-examples, {len(info['prompts'])} prompts; "
                           f"{info['count']} photos")
        elif action == "--list":
            _print(taglib.members(store, name), got["json"])
        elif action == "--suggest":
            _print(taglib.suggestions(store, model, name, got["k"]), got["json"])
        elif action == "--export":
            rows = taglib.members(store, name)
            paths = store.paths_for_contents([r["id"] for r in rows])
            failed = 0
            for row in rows:
                for path in paths.get(row["id"], []):
                    click.echo(path)
                    if got["xmp"]:
                        failed += not _sidecar(path, name)
            if failed:
                raise click.ClickException(f"{failed} sidecars could not be written (above)")
        elif action == "--delete":
            store.require_writable()
            if not store.delete_tag(name):
                raise InputError(f"no tag named {name!r} (see `pixseek tags`)")
            click.echo(f"deleted tag {name!r}")


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tags(ctx: click.Context, as_json: bool) -> None:
    """List every tag with its member count."""
    with _library(ctx) as (store, _model, _encode, _scale):
        rows = [{"name": t.name, "count": n, "version": t.version, "prompts": t.prompt_list}
                for t, n in store.all_tags()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no tags yet: pixseek tag NAME --add PHOTO...")
    for row in rows:
        click.echo(f"{row['count']:>7}  {row['name']}")
