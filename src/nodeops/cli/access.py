"""``nodeops app``, ``nodeops user`` and ``nodeops token``: who may call the API."""

from __future__ import annotations

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
