"""``safemig deploy``, ``safemig runbook`` and ``safemig demo``: thin Typer wrappers.

The work is in :mod:`safemig.deploy` (imported inside the commands: ``safemig lint`` loads
this module too and must not pay for psycopg or boto3). This module only parses options,
calls the library and shows its results through :mod:`safemig.output`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from safemig.commands.common import ConfigOption, EnvOption, JsonOption, QuietOption, SourceOption, load

if TYPE_CHECKING:  # pragma: no cover
    from safemig.deploy.gates import GateResult, Reporter
    from safemig.deploy.pipeline import DeployOutcome, DeployPlan


def _require_env(env: str | None, command: str) -> str:
    from safemig.errors import UsageError

    if not env:
        raise UsageError(
            f"{command} needs --env NAME",
            hint=f"e.g. safemig {command} --env prod (the env from [envs.NAME] in the config)",
        )
    return env


def make_reporter(*, err: bool) -> Reporter:
    """A Reporter that writes each gate as it starts and ends (to stderr when stdout carries JSON)."""
    from safemig import output
    from safemig.deploy.gates import FAILED, PASSED, Reporter
    from safemig.deploy.pipeline import GATES

    names = [gate for gate, _ in GATES]

    def number(name: str) -> str:
        return f"[{names.index(name) + 1}/{len(names)}]" if name in names else "[?]"

    class TerminalReporter(Reporter):
        def gate_started(self, name: str, title: str) -> None:
            output.echo(f"{number(name)} {title} ...", err=err, style="bold")

        def gate_finished(self, result: GateResult) -> None:
            verdict = result.verdict.upper() if result.verdict == FAILED else result.verdict
            text = f"    {result.title}: {verdict} ({result.duration_s:.2f}s)"
            if result.verdict == FAILED:
                output.echo(f"{text}: {result.error}", err=err, style="bold red")
            else:
                summary = f": {result.summary}" if result.summary else ""
                output.echo(text + summary, err=err, style="green" if result.verdict == PASSED else "yellow")

        def gate_skipped(self, result: GateResult) -> None:
            output.echo(f"{number(result.name)} {result.title}: {result.summary}", err=err)

        def note(self, text: str) -> None:
            output.echo(f"    - {text}", err=err)

        def warning(self, text: str) -> None:
            output.echo(f"    ! {text}", err=err, style="yellow")

        def statement(self, env, migration, result) -> None:
            rows = "" if result.rowcount is None else f", {result.rowcount} row{'s' if result.rowcount != 1 else ''}"
            output.echo(
                f"    {env} {migration.name} #{result.index} (line {result.line}) {result.first_line[:70]}"
                f" -> {result.status or 'ok'} in {result.duration_s * 1000:.1f} ms{rows}",
                err=err,
            )

        def backup_progress(self) -> bool:
            return not err and output.color_enabled()

    return TerminalReporter()


def show_plan(plan: DeployPlan) -> None:
    from safemig import output

    output.echo(f"Plan for {plan.env} (dry run: nothing was changed)", style="bold")
    output.echo(f"  database:  {plan.database}")
    if plan.window:
        output.echo(f"  window:    {plan.window}")
    output.echo(f"  1. back up {plan.env} to {plan.backup_destination} and verify the dump")
    output.echo(f"  2. {plan.rehearsal_step()}")
    output.echo(f"  3. apply to {plan.env}, in this order:")
    for item in plan.items:
        m = item.migration
        mode = "no transaction" if m.no_transaction else "transaction"
        rollback = item.rollback.name if item.rollback else "NONE (no rollback script)"
        output.echo(f"       {m.version:>4}  {m.name:<44} {mode:<15} rollback: {rollback}")


def show_summary(outcome: DeployOutcome, root: Path) -> None:
    from safemig import output

    record = outcome.record
    data = record.as_dict()
    if record.status == "failed":
        output.echo(
            f"Deploy to {record.env}: FAILED at {record.failed_gate or 'start'} after {data['duration_s']:.1f}s",
            err=True,
            style="bold red",
        )
    else:
        output.echo(f"Deploy to {record.env}: {record.status} in {data['duration_s']:.1f}s", style="bold green")
    stream_err = record.status == "failed"
    if record.backup:
        output.echo(f"  backup:  {record.backup['uri']}", err=stream_err)
    ran_on = record.rehearsal.get("ran_on") or {}
    if record.rehearsal.get("mode") == "restore" and ran_on.get("database"):
        kept = " (kept: " + ran_on["server"] + ")" if ran_on.get("kept") else " (dropped)"
        output.echo(f"  rehearsal: on {ran_on['database']}, a restore of that backup{kept}", err=stream_err)
    if record.applied:
        output.echo(f"  applied: {', '.join(str(a['version']) for a in record.applied)}", err=stream_err)
    if record.window.get("override_reason"):
        output.echo(f"  outside the window, reason: {record.window['override_reason']}", err=stream_err)
    if outcome.record_path:
        try:
            shown = outcome.record_path.relative_to(root)
        except ValueError:
            shown = outcome.record_path
        output.echo(
            f"  record:  {shown}" + (f" (uploaded: {outcome.record_uri})" if outcome.record_uri else ""), err=stream_err
        )


def register(app: typer.Typer) -> None:
    """Add ``deploy``, ``runbook`` and ``demo`` to the root app."""

    @app.command("deploy")
    def deploy_command(
        env: EnvOption = None,
        config: ConfigOption = None,
        source: SourceOption = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Run preflight and lint, print the plan; change nothing.")
        ] = False,
        outside_window: Annotated[
            bool,
            typer.Option("--outside-window", help="Deploy although the maintenance window is closed (needs --reason)."),
        ] = False,
        reason: Annotated[
            str | None, typer.Option("--reason", help="Why the window is overridden; stored in the deploy record.")
        ] = None,
        lock_wait: Annotated[
            float,
            typer.Option(
                "--lock-wait",
                metavar="SECONDS",
                help="Wait this long for another migrator's lock on the database (default: refuse at once).",
            ),
        ] = 0.0,
        allow_out_of_order: Annotated[
            bool,
            typer.Option("--allow-out-of-order", help="Accept pending migrations older than the newest applied one."),
        ] = False,
        keep_rehearsal: Annotated[
            bool,
            typer.Option(
                "--keep-rehearsal", help="Keep the scratch database the rehearsal restored into (its URL is printed)."
            ),
        ] = False,
        json_out: JsonOption = False,
        quiet: QuietOption = False,
    ) -> None:
        """Run the pre-deploy checklist as gates: preflight, lint, backup, rehearsal, production apply, report.

        The rehearsal runs on a restore of the backup just taken (rehearsal = "restore", the default)
        or on the staging env's database (rehearsal = "staging").

        Stops at the first gate that does not pass. Exit 0 deployed (or nothing to deploy), 1 a gate
        refused or a migration failed, 2 configuration/usage error, 3 database or S3 failure.
        """
        from safemig import output
        from safemig.commands.backup import _sigterm_as_interrupt
        from safemig.deploy.pipeline import DeployOptions, deploy
        from safemig.errors import UsageError
        from safemig.migrations.operations import out_of_order_policy

        name = _require_env(env, "deploy")
        if outside_window and not (reason and reason.strip()):
            raise UsageError(
                "--outside-window needs --reason TEXT", hint='e.g. --outside-window --reason "hotfix for incident 1234"'
            )
        if reason and not outside_window:
            raise UsageError("--reason only goes with --outside-window", hint="drop --reason, or add --outside-window")
        cfg = load(config, source)
        options = DeployOptions(
            dry_run=dry_run,
            outside_window=outside_window,
            reason=reason,
            lock_wait_s=max(0.0, lock_wait),
            # --allow-out-of-order, else the env's / top-level out_of_order ("warn" applies, as "allow")
            allow_out_of_order=out_of_order_policy(cfg, name, allow_flag=allow_out_of_order) != "refuse",
            keep_rehearsal=keep_rehearsal,
        )
        with _sigterm_as_interrupt():  # CI cancelling the job: abort the backup's upload, write the record
            outcome = deploy(cfg, name, options, make_reporter(err=json_out))
        if json_out:
            output.print_json(outcome.plan.as_dict(cfg.root) if outcome.plan else outcome.record.as_dict())
        elif outcome.plan is not None:
            show_plan(outcome.plan)
        if not json_out and not (dry_run and outcome.error is None):
            show_summary(outcome, cfg.root)
        if outcome.upload_warning:
            output.warn(outcome.upload_warning)
        if outcome.error is not None:
            raise outcome.error

    @app.command("runbook")
    def runbook_command(
        env: EnvOption = None,
        config: ConfigOption = None,
        source: SourceOption = None,
        out: Annotated[
            Path | None, typer.Option("--output", "-o", help="Write the Markdown here instead of stdout.")
        ] = None,
    ) -> None:
        """Write the maintenance-window runbook (Markdown) for the pending deploy to ENV."""
        from safemig import output
        from safemig.deploy.runbook import build_runbook, render_markdown
        from safemig.errors import UsageError

        name = _require_env(env, "runbook")
        cfg = load(config, source)
        text = render_markdown(build_runbook(cfg, name))
        if out is None:
            output.plain(text)
            return
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"cannot write {out}: {exc.strerror}", hint="check the directory exists and is writable"
            ) from None
        output.success(f"runbook for {name} written to {out}")

    @app.command("demo")
    def demo_command(
        state_dir: Annotated[
            Path, typer.Option("--state-dir", help="Where the demo keeps its clusters and config.")
        ] = Path(".safemig/demo"),
        keep_running: Annotated[
            bool,
            typer.Option(
                "--keep-running", help="Leave the PostgreSQL servers and the S3 stand-in running (until Ctrl-C for S3)."
            ),
        ] = False,
        reset: Annotated[
            bool, typer.Option("--reset", help="Delete the demo's databases first and start from scratch.")
        ] = False,
        quiet: QuietOption = False,
    ) -> None:
        """Start local staging + prod PostgreSQL and a local S3, then run `safemig deploy --env prod` on them."""
        from safemig.deploy.demo import run_demo

        raise typer.Exit(run_demo(state_dir=state_dir, keep_running=keep_running, reset=reset))
