"""``nodeops app``, ``nodeops user`` and ``nodeops token``: who may call the API, and taking that back.

Every change holds from the next request on, on every running ``nodeops serve`` (no restart), and writes one
audit line (logger ``nodeops.audit``, on stderr here).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer

from nodeops.cli.context import console, fail, state
from nodeops.errors import NodeopsError
from nodeops.service import admin

apps = typer.Typer(help="ESB apps (bk_app_code / bk_app_secret).", no_args_is_help=True)
users = typer.Typer(help="Users and their business grants.", no_args_is_help=True)
tokens = typer.Typer(help="bk_token tickets.", no_args_is_help=True)


@apps.command("add")
def app_add(
    ctx: typer.Context,
    code: str = typer.Argument(..., help="bk_app_code of the new app."),
    secret: str | None = typer.Option(None, help="bk_app_secret to use (>= 16 chars); default: a random one."),
    allow_username: bool = typer.Option(False, "--allow-username", help="Let this app pass bk_username alone."),
) -> None:
    """Register an app and print its secret once."""
    try:
        new = admin.add_app(state(ctx).services.db, code=code, secret=secret, allow_username=allow_username)
    except NodeopsError as exc:
        raise fail(exc) from None
    console.print(f"app [bold]{new.code}[/bold] added; its secret (shown only now):", highlight=False)
    print(new.secret)


@apps.command("rotate")
def app_rotate(
    ctx: typer.Context,
    code: str = typer.Argument(..., help="bk_app_code of the app."),
    secret: str | None = typer.Option(None, help="New bk_app_secret (>= 16 chars); default: a random one."),
) -> None:
    """Give an app a new secret and print it once; the old secret is refused from the next request on."""
    try:
        new = admin.rotate_app(state(ctx).services.db, code=code, secret=secret)
    except NodeopsError as exc:
        raise fail(exc) from None
    console.print(f"app [bold]{new.code}[/bold] has a new secret (shown only now):", highlight=False)
    print(new.secret)


@apps.command("disable")
def app_disable(ctx: typer.Context, code: str = typer.Argument(..., help="bk_app_code of the app.")) -> None:
    """Refuse every request of an app (1306403), from the next one on, until `app enable`."""
    _switch(ctx, "app", code, admin.set_app_disabled, code=code, disabled=True)


@apps.command("enable")
def app_enable(ctx: typer.Context, code: str = typer.Argument(..., help="bk_app_code of the app.")) -> None:
    """Accept a disabled app again, with the secret it had."""
    _switch(ctx, "app", code, admin.set_app_disabled, code=code, disabled=False)


def _switch(ctx: typer.Context, noun: str, name: str, set_disabled: Callable[..., bool], **args: Any) -> None:
    """Disable or enable an app or a user (``set_disabled(db, **args)``) and say whether that changed anything."""
    try:
        changed = set_disabled(state(ctx).services.db, **args)
    except NodeopsError as exc:
        raise fail(exc) from None
    now = "disabled" if args["disabled"] else "enabled"
    console.print(f"{noun} [bold]{name}[/bold] {'is now' if changed else 'was already'} {now}", highlight=False)


@users.command("add")
def user_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Username."),
    superuser: bool = typer.Option(False, "--superuser", help="May view every job."),
) -> None:
    """Register a user."""
    try:
        admin.add_user(state(ctx).services.db, username=name, is_superuser=superuser)
    except NodeopsError as exc:
        raise fail(exc) from None
    console.print(f"user [bold]{name}[/bold] added{' as superuser' if superuser else ''}", highlight=False)


@users.command("grant")
def user_grant(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Username."),
    biz: list[int] = typer.Option(..., "--biz", help="Business id (bk_biz_id); repeat for several."),
) -> None:
    """Let a user view the jobs of these businesses (task_history_view)."""
    try:
        admin.grant(state(ctx).services.db, username=name, bk_biz_ids=biz)
    except NodeopsError as exc:
        raise fail(exc) from None
    console.print(f"user [bold]{name}[/bold] may view business {', '.join(map(str, biz))}", highlight=False)


@users.command("revoke")
def user_revoke(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Username."),
    biz: list[int] = typer.Option(..., "--biz", help="Business id (bk_biz_id); repeat for several."),
) -> None:
    """Stop a user viewing the jobs of these businesses, from the next request on."""
    try:
        had = admin.revoke_grant(state(ctx).services.db, username=name, bk_biz_ids=biz)
    except NodeopsError as exc:
        raise fail(exc) from None
    kept = sorted(set(biz) - set(had))
    message = f"user [bold]{name}[/bold] may no longer view business {', '.join(map(str, sorted(set(biz))))}"
    if kept:
        message += f" (had no grant on {', '.join(map(str, kept))})"
    console.print(message, highlight=False)


@users.command("disable")
def user_disable(ctx: typer.Context, name: str = typer.Argument(..., help="Username.")) -> None:
    """Refuse every request on behalf of a user (1306000), whatever the app or token, until `user enable`."""
    _switch(ctx, "user", name, admin.set_user_disabled, username=name, disabled=True)


@users.command("enable")
def user_enable(ctx: typer.Context, name: str = typer.Argument(..., help="Username.")) -> None:
    """Accept a disabled user again (its unexpired, unrevoked tokens work again too)."""
    _switch(ctx, "user", name, admin.set_user_disabled, username=name, disabled=False)


@tokens.command("issue")
def token_issue(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Username the token stands for."),
    ttl: str = typer.Option("1d", help="Lifetime: 90, 30m, 12h, 1d, 2w."),
) -> None:
    """Issue a bk_token for a user and print it."""
    cli = state(ctx)
    try:
        token = admin.token(
            cli.services.db,
            cli.settings.resolved_secret_key(),
            username=name,
            ttl_s=admin.parse_duration_s(ttl),
        )
    except NodeopsError as exc:
        raise fail(exc) from None
    print(token)


@tokens.command("revoke")
def token_revoke(
    ctx: typer.Context,
    token: str = typer.Argument(..., help="The bk_token to revoke; - reads it from standard input."),
) -> None:
    """Refuse a bk_token, and every web session opened with it, from the next request on."""
    cli = state(ctx)
    if token == "-":
        token = sys.stdin.readline()
    try:
        claims = admin.revoke_token(cli.services.db, cli.settings.resolved_secret_key(), token=token)
    except NodeopsError as exc:
        raise fail(exc) from None
    console.print(f"bk_token of user [bold]{claims.username}[/bold] revoked", highlight=False)
