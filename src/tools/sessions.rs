//! Named sessions on disk: save the session's workflow under a name, restore it later (in this
//! or another conversation), list them, and keep notes. Names and parameters are the original
//! project's (§1.7 of the catalogue); names are checked, so none can reach outside the sessions
//! folder.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ToolError;
use crate::mcp::ToolContext;
use crate::registry::{Hints, ToolSpec, tool};
use crate::session::store::{Note, SessionName, SessionSummary, WorkflowState};
use crate::tools::{NoParams, blocking};
use crate::workflow::edit::{EditState, Source};
use crate::workflow::load::LoadedFormat;

pub fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "save_session",
            "Save the session",
            "Save this session's workflow (as loaded and as edited) under a name, keeping the \
             notes already saved under it, so it can be picked up later with load_session.",
            Hints::WRITE,
            save_session,
        ),
        tool(
            "load_session",
            "Restore a session",
            "Restore a saved session: its workflow becomes this session's workflow (with an \
             empty undo history), and its notes are returned.",
            Hints::EDIT,
            load_session,
        ),
        tool(
            "list_sessions",
            "List saved sessions",
            "List the saved sessions: name, when saved, how many notes, whether it holds a \
             workflow, and any that can't be read.",
            Hints::LOCAL_READ,
            list_sessions,
        ),
        tool(
            "add_note",
            "Add a note",
            "Add a note (what worked, what to try next) to a saved session, creating the \
             session if it doesn't exist yet.",
            Hints::EDIT,
            add_note,
        ),
    ]
}

fn name(raw: &str) -> Result<SessionName, ToolError> {
    Ok(SessionName::parse(raw.trim())?)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveSessionParams {
    /// The name to save under, e.g. `portrait-v2`.
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// A named in-memory session to save, instead of this connection's.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionSaved {
    pub saved: String,
    pub size_bytes: u64,
    pub saved_at: String,
    pub has_workflow: bool,
    pub notes_count: usize,
    /// An unreadable file that was in the way, moved aside.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_aside: Option<String>,
}

async fn save_session(
    cx: ToolContext,
    params: SaveSessionParams,
) -> Result<SessionSaved, ToolError> {
    let name = name(&params.name)?;
    let session = cx.workspace(params.session.as_deref());
    let state = session
        .workflow
        .lock()
        .await
        .as_ref()
        .map(|state| WorkflowState {
            loaded_path: match &state.source {
                Source::Path(path) => Some(path.display().to_string()),
                _ => None,
            },
            format: Some(state.format.as_str().to_string()),
            base: state.base().clone(),
            current: state.current().clone(),
            undo_depth: state.undo_steps(),
        });
    let has_workflow = state.is_some();
    let saved = blocking(&cx.app, move |app| {
        Ok(app.store().save_workflow(&name, state)?)
    })
    .await?;
    Ok(SessionSaved {
        saved: saved.path.display().to_string(),
        size_bytes: saved.size_bytes,
        saved_at: saved.saved_at,
        has_workflow,
        notes_count: saved.notes_count,
        set_aside: saved.set_aside.map(|p| p.display().to_string()),
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadSessionParams {
    /// The saved session's name.
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// A named in-memory session to restore into, instead of this connection's.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionLoaded {
    pub loaded: String,
    pub saved_at: String,
    pub workflow_restored: bool,
    /// The file the workflow was first loaded from, if any.
    pub workflow_path: Option<String>,
    /// Changes from the loaded workflow that the restored one carries.
    pub changes_from_base: usize,
    pub notes: Vec<Note>,
    pub notes_count: usize,
}

async fn load_session(
    cx: ToolContext,
    params: LoadSessionParams,
) -> Result<SessionLoaded, ToolError> {
    let name = name(&params.name)?;
    let file = blocking(&cx.app, {
        let name = name.clone();
        move |app| Ok(app.store().load(&name)?)
    })
    .await?;
    let session = cx.workspace(params.session.as_deref());
    let mut workflow_path = None;
    let mut changes_from_base = 0;
    let workflow_restored = match file.workflow {
        Some(saved) => {
            workflow_path.clone_from(&saved.loaded_path);
            let source = saved.loaded_path.as_ref().map_or_else(
                || Source::Session(name.to_string()),
                |p| Source::Path(p.into()),
            );
            let format = saved
                .format
                .as_deref()
                .and_then(LoadedFormat::parse)
                .unwrap_or(LoadedFormat::Api);
            let state = EditState::restore(
                source,
                format,
                saved.base,
                saved.current,
                cx.app.config().sessions.undo_limit,
            );
            changes_from_base = state.changes_from_base();
            session.workflow.lock().await.set(state);
            true
        }
        None => false,
    };
    Ok(SessionLoaded {
        loaded: name.to_string(),
        saved_at: file.saved_at,
        workflow_restored,
        workflow_path,
        changes_from_base,
        notes_count: file.notes.len(),
        notes: file.notes,
    })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionSummary>,
    pub count: usize,
    pub directory: String,
}

async fn list_sessions(cx: ToolContext, _: NoParams) -> Result<SessionList, ToolError> {
    blocking(&cx.app, |app| {
        let sessions = app.store().list()?;
        Ok(SessionList {
            count: sessions.len(),
            sessions,
            directory: app.store().dir().display().to_string(),
        })
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNoteParams {
    /// The saved session's name; it is created if it doesn't exist.
    #[schemars(length(min = 1, max = 64))]
    pub session_name: String,
    /// The note, e.g. "cfg 6 and dpmpp_2m look best for portraits".
    #[schemars(length(min = 1, max = 4000))]
    pub note: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NoteAdded {
    pub added: bool,
    pub total_notes: usize,
}

async fn add_note(cx: ToolContext, params: AddNoteParams) -> Result<NoteAdded, ToolError> {
    let name = name(&params.session_name)?;
    let saved = blocking(&cx.app, move |app| {
        Ok(app.store().add_note(&name, &params.note)?)
    })
    .await?;
    Ok(NoteAdded {
        added: true,
        total_notes: saved.notes_count,
    })
}
