//! An execution told in Markdown, for people reading it on GitHub: the pull request's body and
//! the job summary of a CI run (`GITHUB_STEP_SUMMARY`). Everything comes from the execution's
//! files (`engine::outcome`): the task, the plan's summary, each reviewer's verdict, the
//! verification's checks, the change and the cost.

use crate::engine::{Outcome, outcome, short};
use crate::spec::{ArtifactType, ExecutionRequest, WorkflowExecution};
use crate::store::ExecutionDir;

/// True when every reviewer approved and the verification passed (or did not run).
pub fn all_passed(o: &Outcome) -> bool {
    o.reviews.iter().all(|r| r.approved == Some(true))
        && o.verification.as_ref().is_none_or(|v| v.passed)
}

/// The first lines of the latest plan (`implementation_plan` or `codebase_docs`), if any.
fn plan_summary(dir: &ExecutionDir, state: &WorkflowExecution) -> Option<String> {
    let plan = state
        .artifacts
        .iter()
        .filter(|a| {
            matches!(
                a.artifact_type,
                ArtifactType::ImplementationPlan | ArtifactType::CodebaseDocs
            )
        })
        .max_by_key(|a| a.iteration)?;
    let text = dir.read_artifact(&plan.file_path).ok()?;
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(12)
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn usd(o: &Outcome) -> String {
    let plus = if o.cost.unknown {
        format!(" + {} call(s) of unknown cost", o.cost.unknown_calls)
    } else {
        String::new()
    };
    format!("${:.4}{plus}", o.cost.usd)
}

/// The Markdown report of the execution in `dir`.
pub fn markdown(
    dir: &ExecutionDir,
    request: &ExecutionRequest,
    state: &WorkflowExecution,
) -> String {
    let o = outcome(dir, state);
    let mut md = String::new();
    md.push_str(&format!(
        "### autowrkers: {} ({})\n\n",
        o.status,
        if all_passed(&o) {
            "all checks passed"
        } else {
            "not everything passed"
        }
    ));
    md.push_str("**Task**\n\n");
    for line in request.task_description.lines() {
        md.push_str(&format!("> {line}\n"));
    }
    if let Some(plan) = plan_summary(dir, state) {
        md.push_str(&format!("\n**Plan**\n\n{plan}\n"));
    }
    md.push_str("\n**Reviews**\n\n");
    if o.reviews.is_empty() {
        md.push_str("- none ran\n");
    }
    for r in &o.reviews {
        let verdict = match r.approved {
            Some(true) => "approved",
            Some(false) => "changes requested",
            None => "did not finish",
        };
        let summary = r.summary.as_deref().unwrap_or("");
        md.push_str(&format!(
            "- `{}`: **{verdict}** ({} issue(s)) {summary}\n",
            r.phase, r.issues
        ));
    }
    md.push_str("\n**Verification**\n\n");
    match &o.verification {
        Some(v) => {
            md.push_str(&format!(
                "{} ({})\n\n",
                if v.passed { "passed" } else { "failed" },
                v.source
            ));
            for (name, code) in &v.checks {
                let code = code.map_or("killed".to_owned(), |c| format!("exit {c}"));
                md.push_str(&format!("- `{name}`: {code}\n"));
            }
        }
        None => md.push_str("did not run\n"),
    }
    if let Some(c) = &o.change {
        md.push_str(&format!(
            "\n**Change**: {} file(s), +{} −{}\n",
            c.files_changed, c.insertions, c.deletions
        ));
    }
    md.push_str(&format!(
        "\n**Cost**: {} · iteration {} · execution `{}` (`autowrkers workflow status {}`)\n",
        usd(&o),
        o.iteration,
        o.id,
        short(&o.id)
    ));
    if !o.message.is_empty() {
        md.push_str(&format!("\n{}\n", o.message));
    }
    md
}
