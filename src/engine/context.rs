//! What a phase sees: its rendered prompts, the artifacts visible to it, and its fingerprint.
//!
//! A phase in iteration N sees artifacts of earlier iterations, and of iteration N only from
//! earlier steps; so its prompt (and fingerprint) does not change when later phases run, and
//! `resume` finds it up to date.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::prompts::{PromptContext, PromptError, PromptLibrary};
use crate::spec::{
    ArtifactType, ExecutionRequest, PhaseRole, WorkflowExecution, WorkflowPhase, WorkflowTemplate,
};
use crate::store::ExecutionDir;
use crate::verify::Checks;

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// True when an artifact of `state` differs from what the runner wrote: a hand edit not yet
/// recorded (nothing is marked here; `hand_edit` does that).
pub(crate) fn any_edited(dir: &ExecutionDir, state: &WorkflowExecution) -> bool {
    state.artifacts.iter().any(|a| {
        dir.read_artifact(&a.file_path)
            .is_ok_and(|content| sha256_hex(content.as_bytes()) != a.sha256)
    })
}

/// Index of the step a phase runs in.
fn step_of(template: &WorkflowTemplate, phase_id: &str) -> usize {
    template
        .steps()
        .iter()
        .position(|s| s.iter().any(|p| p.id == phase_id))
        .unwrap_or(usize::MAX)
}

/// A phase's inputs, rendered.
pub struct Prepared {
    /// The system message.
    pub system_prompt: String,
    /// The user message (empty for the verifier).
    pub prompt: String,
    /// Artifacts the prompt read.
    pub input_artifact_ids: Vec<String>,
    /// Hash of definition, prompts and inputs.
    pub fingerprint: String,
}

/// What a reviewer of `iteration` reads as `code_diff`: the implementer's change since the
/// code reviewed in the previous iteration, and the findings of that review — not the whole
/// diff again. `None` (the whole diff stays) when either commit is unknown.
fn since_last_review(
    request: &ExecutionRequest,
    state: &WorkflowExecution,
    dir: &ExecutionDir,
    iteration: u32,
) -> Option<String> {
    let tip = |it: u32| {
        state
            .phase_executions
            .iter()
            .filter(|r| r.iteration == it && r.phase_role == PhaseRole::Implementer)
            .find_map(|r| r.commit.clone())
    };
    let (before, now) = (tip(iteration - 1)?, tip(iteration)?);
    let repo = crate::git::ProjectRepo::open(std::path::Path::new(&request.project_path))?;
    let diff = repo.diff_commits(&before, &now).ok()?;
    let mut text = format!(
        "### Changes since the review of iteration {} (the whole change since the start is artifact:code_diff_full)\n{}",
        iteration - 1,
        if diff.trim().is_empty() {
            "(no change)\n"
        } else {
            diff.as_str()
        }
    );
    let history = super::findings::track(dir, state, &request.template.convergence);
    if let Some(last) = history.iter().find(|h| h.iteration == iteration - 1) {
        text.push_str(&format!(
            "\n### Findings of iteration {} to check again\n",
            iteration - 1
        ));
        for f in &last.findings {
            let file = f
                .file
                .as_deref()
                .map_or(String::new(), |p| format!(" {p}:"));
            text.push_str(&format!(
                "- {} [{}]{file} {}\n",
                f.id, f.severity, f.description
            ));
        }
    }
    Some(text)
}

/// Renders the prompts of `phase` in `iteration` and fingerprints it.
pub fn prepare(
    request: &ExecutionRequest,
    state: &WorkflowExecution,
    dir: &ExecutionDir,
    prompts: &PromptLibrary,
    checks: &Checks,
    phase: &WorkflowPhase,
    iteration: u32,
) -> Result<Prepared, PromptError> {
    let template = &request.template;
    let my_step = step_of(template, &phase.id);
    let mut inputs = Vec::new();
    let mut artifacts: BTreeMap<&'static str, String> = BTreeMap::new();
    for kind in ArtifactType::ALL {
        let visible: Vec<_> = state
            .artifacts
            .iter()
            .filter(|a| a.artifact_type == kind)
            .filter(|a| {
                a.iteration < iteration
                    || (a.iteration == iteration && step_of(template, &a.phase_id) < my_step)
            })
            .collect();
        let Some(latest) = visible.iter().map(|a| a.iteration).max() else {
            continue;
        };
        let mut text = String::new();
        for a in visible.iter().filter(|a| a.iteration == latest) {
            let content = dir.read_artifact(&a.file_path).unwrap_or_default();
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            let name = template
                .phase(&a.phase_id)
                .map_or(a.phase_id.as_str(), |p| p.name.as_str());
            text.push_str(&format!(
                "### {name} (iteration {})\n{}",
                a.iteration,
                content.trim_end()
            ));
            inputs.push(a.id.clone());
        }
        artifacts.insert(kind.as_str(), text);
    }
    if phase.role.is_reviewer()
        && iteration > 1
        && let Some(since) = since_last_review(request, state, dir, iteration)
    {
        let full = artifacts
            .remove(ArtifactType::CodeDiff.as_str())
            .unwrap_or_default();
        artifacts.insert("code_diff_full", full);
        artifacts.insert(ArtifactType::CodeDiff.as_str(), since);
    }
    let command = |n: &str| {
        checks
            .commands
            .iter()
            .find(|(name, _)| *name == n)
            .map_or("(none)".to_owned(), |(_, c)| c.clone())
    };
    let workdir = state
        .workspace
        .as_ref()
        .map_or(request.project_path.clone(), |w| w.dir.clone());
    let mut vars = BTreeMap::new();
    vars.insert("project_path", workdir.clone().into());
    vars.insert("task_description", request.task_description.clone().into());
    vars.insert("iteration", iteration.into());
    vars.insert("max_iterations", template.max_iterations.into());
    vars.insert("lint_command", command("lint").into());
    vars.insert("test_command", command("test").into());
    vars.insert("build_command", command("build").into());
    vars.insert("phase_name", phase.name.clone().into());
    vars.insert("role", phase.role.as_str().into());
    // Agent CLIs bring their own tools, which take paths their own way.
    vars.insert(
        "agent_cli",
        phase.provider_config.provider_type.is_agent_cli().into(),
    );
    vars.insert("template_name", template.name.clone().into());
    let ctx = PromptContext { vars, artifacts };
    let (system_prompt, prompt) = match (&phase.prompt_template, phase.role) {
        (Some(p), role) if role != PhaseRole::Verifier => (
            prompts.render("system_prompt", &ctx)?,
            prompts.render(p, &ctx)?,
        ),
        _ => (String::new(), String::new()),
    };
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(phase).unwrap_or_default());
    hasher.update(system_prompt.as_bytes());
    hasher.update(prompt.as_bytes());
    if let Some(ws) = &state.workspace {
        hasher.update(ws.base_commit.as_deref().unwrap_or("").as_bytes());
    }
    if phase.role == PhaseRole::Verifier {
        // The verifier judges the code: its input is the latest diff and the commands.
        for (name, cmd) in &checks.commands {
            hasher.update(format!("{name}={cmd}\n").as_bytes());
        }
        hasher.update(
            ctx.artifacts
                .get(ArtifactType::CodeDiff.as_str())
                .map_or("", String::as_str)
                .as_bytes(),
        );
    }
    let fingerprint = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Prepared {
        system_prompt,
        prompt,
        input_artifact_ids: inputs,
        fingerprint,
    })
}
