"""The Gradio UI: a Chat tab for everyone, an Admin tab for admins.

The Admin tab is built hidden (visible=False: not rendered at all) and shown by `demo.load` only
when the signed-in user is an admin. That is presentation; the rule is enforced in every admin
handler, which looks up the caller's role from `gr.Request.username` and refuses non-admins, so an
employee calling an admin endpoint of the Gradio API directly gets an error, not the action.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from sopforge.errors import UserError
from sopforge.serve import admin
from sopforge.serve.assistant import Answer, Sources
from sopforge.serve.audit import add_feedback
from sopforge.serve.auth import User
from sopforge.serve.guard import AttemptStart, Delta

if TYPE_CHECKING:
    from sopforge.serve.app import ServerState

log = logging.getLogger(__name__)

DATASET_HEADERS = ["task", "contract", "question", "answer"]


def format_choices(state: ServerState) -> list[tuple[str, str]]:
    """Picker entries: auto, the common built-ins, then every json:NAME and custom contract of the
    formats folder. Other specs (bullets:7) can be typed in."""
    specs = ["plain", "bullets:3", "bullets:5", "numbered"]
    specs += [n for n in state.registry.names() if n not in specs and n != "bullets:N"]
    return [("auto (from the question)", "auto")] + [(s, s) for s in specs]


def render_answer(answer: Answer) -> str:
    """The chat message for a finished answer: the answer, or a clearly failed result, plus the
    retrieved sources (always shown, whatever the model cited)."""
    sources = "; ".join(s.citation for s in answer.sources) or "no matching procedure section"
    if answer.valid:
        shown = (
            f"```json\n{answer.body.strip()}\n```"
            if answer.format.startswith("json")
            else answer.text
        )
        status = f"✓ format {answer.format}"
    else:
        shown = (
            f"⚠️ **{answer.text}**\n\nFailed output (not a valid answer):\n\n"
            f"```text\n{answer.failed_output.strip()[:1500]}\n```"
        )
        status = f"✗ format {answer.format} not met"
    if answer.removed:
        status += f" · {len(answer.removed)} citation(s) removed (not a current procedure section)"
    return f"{shown}\n\n**Sources:** {sources}\n\n_{status} · model {answer.model_id}_"


def discard_uploads(paths: list[Path]) -> None:
    """Delete uploaded temp files, but only ones inside Gradio's upload folder."""
    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder()).resolve()
    for path in paths:
        resolved = path.resolve()
        if resolved.is_relative_to(folder) and resolved != folder:
            resolved.unlink(missing_ok=True)
            if resolved.parent != folder:
                with contextlib.suppress(OSError):  # Gradio's per-upload folder, once empty
                    resolved.parent.rmdir()


def build_ui(state: ServerState) -> gr.Blocks:
    def current_user(request: gr.Request | None) -> User:
        user = (
            state.users.get(request.username) if request is not None and request.username else None
        )
        if user is None:
            raise gr.Error("Your session has ended: sign in again at /login.")
        return user

    def current_admin(request: gr.Request | None) -> User:
        try:
            return admin.require_admin(current_user(request))
        except admin.PermissionDenied as e:
            raise gr.Error(str(e)) from e

    # ---- chat -------------------------------------------------------------------------------

    def respond(
        message: str,
        chat: list[dict[str, Any]],
        fmt: str,
        turns: list,
        ids: dict,
        request: gr.Request,
    ):
        user = current_user(request)
        if not message or not message.strip():
            raise gr.Error("Type a question first.")
        chat = list(chat or []) + [
            {"role": "user", "content": message},
            {"role": "assistant", "content": "…"},
        ]
        sources_md, status, text = "", "", ""
        yield "", chat, sources_md, status, turns, ids
        try:
            for event in state.assistant.ask(
                message, user=user.name, channel="web", format=fmt, history=turns
            ):
                if isinstance(event, Sources):
                    sources_md = (
                        "\n".join(f"- {s.citation}" for s in event.sections)
                        or "_No procedure section matched._"
                    )
                elif isinstance(event, AttemptStart) and event.number > 1:
                    text, status = (
                        "",
                        f"Attempt {event.number}: the last answer did not follow the format; retrying…",
                    )
                elif isinstance(event, Delta):
                    text += event.text
                    chat[-1] = {"role": "assistant", "content": text}
                elif isinstance(event, Answer):
                    chat[-1] = {"role": "assistant", "content": render_answer(event)}
                    ids = {**ids, str(len(chat) - 1): event.audit_id}
                    if event.valid:
                        turns = [*turns, (message, event.body)]
                    status = "" if event.valid else event.text
                yield gr.skip(), chat, sources_md, status, turns, ids
        except UserError as e:
            chat[-1] = {"role": "assistant", "content": f"⚠️ {e}"}
            yield gr.skip(), chat, sources_md, str(e), turns, ids

    def on_like(ids: dict, data: gr.LikeData, request: gr.Request) -> str:
        user = current_user(request)
        index = data.index if isinstance(data.index, int) else data.index[0]
        audit_id = ids.get(str(index))
        if audit_id is None:
            return "Feedback works on the assistant's answers."
        rating = 1 if data.liked in (True, "Like") else -1
        add_feedback(state.ws, audit_id, user.name, rating)
        return "Thanks, your feedback was recorded."

    # ---- admin ------------------------------------------------------------------------------

    def on_load(request: gr.Request):
        user = current_user(request)
        header = f"Signed in as **{user.name}** ({user.role}) · [Sign out](/logout)"
        if not user.is_admin:
            return header, gr.Tab(visible=False), gr.skip(), gr.skip(), gr.skip()
        return header, gr.Tab(visible=True), *models_view(), admin.evaluation_report(user, state.ws)

    def models_view() -> tuple[Any, Any]:
        rows = admin.model_rows(state.ws)
        choices = [r[0] for r in rows]
        serving = state.engine.model_id
        return rows, gr.Dropdown(choices=choices, value=serving if serving in choices else None)

    def do_ingest(files: list[str] | None, request: gr.Request):
        user = current_admin(request)
        uploaded = [Path(f) for f in files or []]
        try:
            report = admin.ingest_uploads(user, state.ws, uploaded, state.cfg.ingest_config)
        except UserError as e:
            raise gr.Error(str(e)) from e
        # The originals are now in the workspace; Gradio's copies would stay in its temp folder
        # (and downloadable from it) for as long as the server runs: remove them.
        discard_uploads(uploaded)
        return admin.report_summary(report), admin.report_rows(report), None

    def do_dataset(request: gr.Request):
        caption, rows = admin.dataset_preview(current_admin(request), state.ws)
        return caption, rows

    def do_retrain(request: gr.Request):
        try:
            state.training.start(current_admin(request))
        except UserError as e:
            raise gr.Error(str(e)) from e
        return "Retraining started…", gr.Timer(active=True)

    def poll_training(request: gr.Request):
        current_admin(request)
        s = state.training.status
        import pandas as pd

        plot = pd.DataFrame(s.losses or [], columns=["step", "loss"])
        bar = f'<progress id="train-progress" max="100" value="{s.fraction * 100:.0f}"></progress> step {s.step}/{s.max_steps or "?"}'
        running = s.state == "running"
        return f"**{s.state}** {s.message}", bar, plot, gr.Timer(active=running)

    def do_promote(model_id: str | None, force: bool, request: gr.Request):
        user = current_admin(request)
        if not model_id:
            raise gr.Error("Pick a model to promote.")
        try:
            admin.promote(user, state.ws, model_id, force=bool(force))
            serving = state.engine.reload(state.ws)
        except UserError as e:
            raise gr.Error(str(e)) from e
        return f"Promoted {model_id}; now serving {serving}.", *models_view()

    def do_rollback(request: gr.Request):
        user = current_admin(request)
        try:
            model_id = admin.rollback(user, state.ws)
            serving = state.engine.reload(state.ws)
        except UserError as e:
            raise gr.Error(str(e)) from e
        return f"Rolled back to {model_id}; now serving {serving}.", *models_view()

    def do_report(model_id: str | None, request: gr.Request):
        return admin.evaluation_report(current_admin(request), state.ws, model_id or None)

    with gr.Blocks(title="sopforge") as demo:
        header = gr.Markdown(elem_id="header")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chatbot = gr.Chatbot(label="Procedures assistant", height=460, elem_id="chatbot")
                with gr.Row():
                    question = gr.Textbox(
                        placeholder="Ask about a procedure, e.g. 'I lost my badge, what do I do?'",
                        show_label=False,
                        scale=5,
                        elem_id="question",
                    )
                    fmt = gr.Dropdown(
                        format_choices(state),
                        value="auto",
                        label="Answer format",
                        allow_custom_value=True,
                        scale=1,
                        elem_id="format",
                    )
                ask = gr.Button("Ask", variant="primary", elem_id="ask")
                status = gr.Markdown(elem_id="status")
                with gr.Accordion("Sources", open=True):
                    sources = gr.Markdown(elem_id="sources")
                turns = gr.State([])
                audit_ids = gr.State({})
            with gr.Tab("Admin", id="admin", visible=False, elem_id="admin-tab") as admin_tab:
                gr.Markdown("### Upload documents")
                files = gr.File(
                    file_count="multiple",
                    label="Documents (PDF, DOCX, Markdown, text, HTML)",
                    type="filepath",
                    elem_id="upload",
                )
                ingest_btn = gr.Button("Ingest", variant="primary", elem_id="ingest")
                ingest_summary = gr.Markdown(elem_id="ingest-summary")
                ingest_table = gr.Dataframe(
                    headers=admin.REPORT_HEADERS,
                    datatype="str",  # shown as text: a file name or title is never markup
                    interactive=False,
                    wrap=True,
                    elem_id="ingest-report",
                )
                gr.Markdown("### Dataset")
                dataset_btn = gr.Button("Show dataset preview")
                dataset_caption = gr.Markdown()
                dataset_table = gr.Dataframe(headers=DATASET_HEADERS, interactive=False, wrap=True)
                gr.Markdown("### Retrain")
                retrain_btn = gr.Button("Retrain now", elem_id="retrain")
                train_status = gr.Markdown()
                train_bar = gr.HTML()
                loss_plot = gr.LinePlot(x="step", y="loss", title="Training loss", height=260)
                timer = gr.Timer(2.0, active=False)
                gr.Markdown("### Models")
                models_table = gr.Dataframe(headers=admin.MODEL_HEADERS, interactive=False)
                with gr.Row():
                    model_pick = gr.Dropdown(label="Model", choices=[], allow_custom_value=False)
                    force = gr.Checkbox(label="Force (skip the no-regression gate)", value=False)
                    promote_btn = gr.Button("Promote")
                    rollback_btn = gr.Button("Roll back")
                    report_btn = gr.Button("Show its evaluation report")
                models_msg = gr.Markdown()
                gr.Markdown("### Evaluation report")
                report_md = gr.Markdown()

        chat_outputs = [question, chatbot, sources, status, turns, audit_ids]
        chat_inputs = [question, chatbot, fmt, turns, audit_ids]
        ask.click(respond, chat_inputs, chat_outputs, concurrency_limit=8)
        question.submit(respond, chat_inputs, chat_outputs, concurrency_limit=8)
        chatbot.like(on_like, [audit_ids], [status])
        demo.load(on_load, None, [header, admin_tab, models_table, model_pick, report_md])
        ingest_btn.click(
            do_ingest, [files], [ingest_summary, ingest_table, files], api_visibility="private"
        )
        dataset_btn.click(
            do_dataset, None, [dataset_caption, dataset_table], api_visibility="private"
        )
        retrain_btn.click(do_retrain, None, [train_status, timer], api_visibility="private")
        timer.tick(
            poll_training,
            None,
            [train_status, train_bar, loss_plot, timer],
            api_visibility="private",
        )
        promote_btn.click(
            do_promote,
            [model_pick, force],
            [models_msg, models_table, model_pick],
            api_visibility="private",
        )
        rollback_btn.click(
            do_rollback, None, [models_msg, models_table, model_pick], api_visibility="private"
        )
        report_btn.click(do_report, [model_pick], [report_md], api_visibility="private")
    return demo
