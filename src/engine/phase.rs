//! Running one phase once: a model phase through the agent loop (with answer checks, retries
//! and the fallback chain), or the verifier's commands. The reconciler decides *whether* to run
//! it; this module only runs it and reports.

use std::path::Path;
use std::time::{Duration, Instant};

use super::agent_phase::cli_answer;
use super::events::EventKind;
use super::extract::json_artifact;
use super::job::{Failure, PhaseEnv, PhaseJob, PhaseOutcome};
use super::observer::PhaseObserver;
use crate::agent::{self, Tally, Toolbox};
use crate::budget::Warning;
use crate::git::{self, ProjectRepo};
use crate::providers::{self, Answerer, ChatRequest, Message, ReplyText, Role};
use crate::sandbox::Sandbox;
use crate::spec::{ArtifactType, PhaseRole, PhaseStatus, ProviderConfig, WorkflowPhase};
use crate::verify;

const DEFAULT_MAX_TURNS: u32 = 40;

/// Runs `job` within its timeout.
pub(crate) async fn run_phase(job: &PhaseJob<'_>, env: &PhaseEnv<'_>) -> PhaseOutcome {
    let started = Instant::now();
    let limit = Duration::from_secs(job.phase.timeout_seconds.max(1));
    let observer = PhaseObserver::new(env, job);
    let config = &job.phase.provider_config;
    // Owned here, so the tokens of calls made before a timeout are still recorded.
    let mut tally = Tally::new();
    let result = tokio::time::timeout(limit, run_inner(job, env, &observer, &mut tally)).await;
    let mut outcome = match result {
        Ok(outcome) => outcome,
        // Dropping the phase's future killed its commands' process groups.
        Err(_) => PhaseOutcome::failed(
            tally.clone(),
            config,
            format!("timed out after {}s", limit.as_secs()),
        ),
    };
    if let Some(size) = outcome.artifact.as_ref().map(|a| a.len() as u64)
        && size > env.limits.artifact_bytes
    {
        outcome.artifact = None;
        outcome.status = PhaseStatus::Failed;
        outcome.passed = None;
        outcome.error = format!(
            "its artifact is {size} bytes, over the limit of {} (output_limits.artifact_bytes in .autowrkers/config.yaml)",
            env.limits.artifact_bytes
        );
    }
    observer.flush();
    if !outcome.error.is_empty() {
        observer.log(&format!("\nerror: {}\n", outcome.error));
    }
    outcome.duration = started.elapsed();
    outcome
}

async fn run_inner(
    job: &PhaseJob<'_>,
    env: &PhaseEnv<'_>,
    observer: &PhaseObserver<'_>,
    tally: &mut Tally,
) -> PhaseOutcome {
    let spec = env
        .sandbox
        .spec_for(job.phase, Path::new(&env.workspace.dir));
    // A phase that runs commands (an agent CLI, the implementer, the verifier) starts in the
    // worktree: it waits for the worktree to be made. Others wait at their first tool call.
    if spec.is_some()
        && let Err(e) = env.worktree.wait().await
    {
        return PhaseOutcome::failed(tally.clone(), &job.phase.provider_config, e);
    }
    let sandbox = match spec.map(|spec| Sandbox::new(&spec)).transpose() {
        Ok(s) => s,
        Err(e) => {
            return PhaseOutcome::failed(tally.clone(), &job.phase.provider_config, e.to_string());
        }
    };
    // Nothing costs money or touches the worktree while a completed phase's state is still
    // queued: a kill from here on never makes a completed phase run again.
    if let Err(e) = env.recorder.flush_work() {
        return PhaseOutcome::failed(tally.clone(), &job.phase.provider_config, e.to_string());
    }
    if let Some(s) = &sandbox {
        observer.note(&format!("sandbox: {}", s.mode().as_str()));
    }
    if job.phase.role == PhaseRole::Verifier {
        return run_verifier(env, observer, sandbox.as_ref(), &job.phase.provider_config).await;
    }
    let mut errors = Vec::new();
    let chain: Vec<&ProviderConfig> = job.phase.provider_config.chain().collect();
    for (i, current) in chain.iter().copied().enumerate() {
        match run_model(job, env, observer, current, tally, sandbox.as_ref()).await {
            Ok(mut outcome) => {
                if let Some(served) = tally.served_model.as_deref()
                    && providers::model_mismatch(&current.model_name, served)
                {
                    observer.note(&format!(
                        "note: requested {} but {served} answered",
                        current.model_name
                    ));
                    env.bus.emit(EventKind::ModelMismatch {
                        phase_id: job.phase.id.clone(),
                        iteration: job.iteration,
                        requested: current.model_name.clone(),
                        served: served.to_owned(),
                    });
                }
                if !errors.is_empty() {
                    outcome.error = format!("answered by fallback after: {}", errors.join("; "));
                }
                outcome.tally = tally.clone();
                return outcome;
            }
            Err(Failure::Answer(e)) => return PhaseOutcome::failed(tally.clone(), current, e),
            Err(Failure::Budget(e)) => {
                let mut outcome = PhaseOutcome::failed(
                    tally.clone(),
                    current,
                    format!("stopped before a call: {e}"),
                );
                outcome.budget = Some(e);
                return outcome;
            }
            Err(Failure::Provider(e)) => {
                let label = current.label();
                if e.is_quota_exhausted() {
                    env.bus.emit(EventKind::ProviderExhausted {
                        phase_id: job.phase.id.clone(),
                        iteration: job.iteration,
                        provider: label.clone(),
                        message: e.to_string(),
                    });
                }
                errors.push(format!("{label}: {e}"));
                if let Some(next) = chain.get(i + 1) {
                    let to = next.label();
                    observer.note(&format!("{label} failed: {e}; falling back to {to}"));
                    env.bus.emit(EventKind::ProviderFallback {
                        phase_id: job.phase.id.clone(),
                        iteration: job.iteration,
                        from: label,
                        to,
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
    PhaseOutcome::failed(tally.clone(), &job.phase.provider_config, errors.join("; "))
}

async fn run_model(
    job: &PhaseJob<'_>,
    env: &PhaseEnv<'_>,
    observer: &PhaseObserver<'_>,
    config: &ProviderConfig,
    tally: &mut Tally,
    sandbox: Option<&Sandbox>,
) -> Result<PhaseOutcome, Failure> {
    let phase = job.phase;
    // Agent CLIs run their own loop; chat models get ours.
    let provider = match providers::answerer(config, env.project, env.http, env.keys)
        .map_err(Failure::Provider)?
    {
        Answerer::Chat(p) => Some(p),
        Answerer::Cli => None,
    };
    let implementer = phase.role == PhaseRole::Implementer;
    let worktree = if implementer && env.in_worktree {
        Some(reset_worktree(job, env)?)
    } else {
        None
    };
    let toolbox = if env.worktree.pending() {
        // The workspace's path is canonical as recorded; the folder may not be there yet.
        let root = env.workspace.dir.clone().into();
        Toolbox::after(root, implementer, sandbox, env.worktree.clone())
    } else {
        Toolbox::new(Path::new(&env.workspace.dir), implementer, sandbox)
            .map_err(|e| Failure::Answer(e.to_string()))?
    };
    let max_turns = config.extra_params.max_turns.unwrap_or(DEFAULT_MAX_TURNS);
    // A chat model gets our loop and a conversation; an agent CLI only the prompt.
    let mut chat = provider.map(|p| {
        let request = ChatRequest {
            model: config.model_name.clone(),
            messages: vec![
                Message::text(Role::System, &job.system_prompt),
                Message::text(Role::User, &job.prompt),
            ],
            tools: toolbox.specs(),
            temperature: config.temperature,
            max_tokens: env.budget.cap_to_send(
                config.provider_type.as_str(),
                &config.model_name,
                config.extra_params.max_tokens,
            ),
            phase_id: phase.id.clone(),
            iteration: job.iteration,
        };
        (p, request)
    });
    // Why earlier answers were not accepted: said to the model with the next attempt.
    let mut retries: Vec<String> = Vec::new();
    let mut attempt = 0;
    let warn = |w: Warning| {
        env.bus.emit(EventKind::BudgetWarning {
            scope: w.scope,
            spent: w.spent,
            limit: w.limit,
        });
    };
    let meter = env.budget.meter(&phase.id, job.iteration, &warn);
    let (text, checked) = loop {
        let text = if let Some((provider, request)) = &mut chat {
            agent::converse(
                provider.as_ref(),
                request,
                &toolbox,
                max_turns,
                observer,
                tally,
                &meter,
            )
            .await
            .map_err(|e| match e {
                agent::AgentError::Provider(p) => Failure::Provider(p),
                agent::AgentError::Budget(b) => Failure::Budget(b),
                other => Failure::Answer(other.to_string()),
            })?
        } else {
            cli_answer(
                job,
                env,
                observer,
                (config, sandbox),
                &retries,
                tally,
                &meter,
            )
            .await?
            .into()
        };
        match check_answer(phase, &text) {
            Ok(checked) => break (text, checked),
            Err(reason) if attempt < phase.max_retries => {
                attempt += 1;
                observer.note(&format!(
                    "answer not accepted ({reason}); asking again ({attempt}/{})",
                    phase.max_retries
                ));
                let retry = retry_text(phase, &reason);
                if let Some((_, request)) = &mut chat {
                    let text = text
                        .into_string()
                        .map_err(|e| Failure::Answer(unreadable(&e)))?;
                    request.messages.push(agent::answer_message(text));
                    request.messages.push(Message::text(Role::User, &retry));
                }
                retries.push(retry);
            }
            Err(reason) => {
                return Err(Failure::Answer(format!(
                    "answer not accepted after {} retries: {reason}",
                    phase.max_retries
                )));
            }
        }
    };
    let (artifact, passed, commit) =
        artifact_of(env, observer, job, text, checked, worktree.as_ref())?;
    Ok(PhaseOutcome {
        status: PhaseStatus::Completed,
        passed,
        artifact,
        tally: Tally::new(),
        provider_used: config.provider_type.as_str().to_owned(),
        model_used: config.model_name.clone(),
        error: String::new(),
        duration: Duration::ZERO,
        budget: None,
        commit,
    })
}

/// The implementer starts from the code it must find: uncommitted files in its worktree can
/// only be an interrupted run's half work. Returns the worktree's repository, for its diff.
fn reset_worktree(job: &PhaseJob<'_>, env: &PhaseEnv<'_>) -> Result<git2::Repository, Failure> {
    let worktree = open_worktree(env).map_err(Failure::Answer)?;
    git::reset_worktree(&worktree, job.start_commit.as_deref())
        .map_err(|e| Failure::Answer(e.to_string()))?;
    Ok(worktree)
}

/// The project's repository, opened once by the pass.
fn project_repo<'e>(env: &PhaseEnv<'e>) -> Result<&'e ProjectRepo, String> {
    env.repo
        .ok_or_else(|| "the project is no longer a git repository".to_owned())
}

/// The run's worktree, found through the project's records of it.
fn open_worktree(env: &PhaseEnv<'_>) -> Result<git2::Repository, String> {
    project_repo(env)?
        .worktree_repo(Path::new(&env.workspace.dir))
        .map_err(|e| e.to_string())
}

/// What the model is told when its answer was not accepted.
fn retry_text(phase: &WorkflowPhase, reason: &str) -> String {
    let pattern = phase
        .success_pattern
        .as_deref()
        .map(|p| format!(" and end with `{p}`"))
        .unwrap_or_default();
    format!(
        "Your answer was not accepted: {reason}. Answer again with the complete output in the required format{pattern}."
    )
}

/// What an accepted answer leaves: its artifact, a reviewer's verdict, and (for the
/// implementer in a worktree) the commit holding its changes.
type Produced = (Option<String>, Option<bool>, Option<String>);

/// The [`Produced`] of an accepted answer: its text, and its JSON when checked as one.
fn artifact_of(
    env: &PhaseEnv<'_>,
    observer: &PhaseObserver<'_>,
    job: &PhaseJob<'_>,
    text: ReplyText,
    checked: Option<serde_json::Value>,
    worktree: Option<&git2::Repository>,
) -> Result<Produced, Failure> {
    let phase = job.phase;
    let kind = phase.output_artifact_type;
    Ok(match kind {
        ArtifactType::CodeDiff => {
            let (diff, tip) = code_diff(env, observer, job, worktree).map_err(Failure::Answer)?;
            (Some(diff), None, tip)
        }
        _ if kind.is_json() => {
            let value = checked.unwrap_or_default();
            let passed = if phase.role.is_reviewer() {
                value.get("approved").and_then(|v| v.as_bool())
            } else {
                None
            };
            (
                Some(serde_json::to_string_pretty(&value).unwrap_or_default()),
                passed,
                None,
            )
        }
        // A text artifact is the answer itself: held once, within output_limits.artifact_bytes.
        _ => {
            let text = text
                .into_string()
                .map_err(|e| Failure::Answer(unreadable(&e)))?;
            (
                Some(text_artifact(text, phase.success_pattern.as_deref())),
                None,
                None,
            )
        }
    })
}

/// A text answer as its artifact: the success pattern removed and the ends trimmed, in place
/// (a long reply is not copied).
fn text_artifact(mut text: String, pattern: Option<&str>) -> String {
    if let Some(p) = pattern.filter(|p| !p.is_empty()) {
        let mut from = 0;
        while let Some(at) = text[from..].find(p) {
            text.replace_range(from + at..from + at + p.len(), "");
            from += at;
        }
    }
    let end = text.trim_end().len();
    text.truncate(end);
    let start = text.len() - text.trim_start().len();
    text.drain(..start);
    text.push('\n');
    text
}

/// Why an answer that went to a temporary file is lost.
fn unreadable(e: &std::io::Error) -> String {
    format!("the answer could not be read back from its temporary file: {e}")
}

/// Checks the final answer: the success pattern, and for JSON artifacts the schema. A long
/// answer is searched in its file, never loaded whole.
fn check_answer(
    phase: &WorkflowPhase,
    text: &ReplyText,
) -> Result<Option<serde_json::Value>, String> {
    if let Some(p) = phase.success_pattern.as_deref().filter(|p| !p.is_empty())
        && text.find(p, 0).map_err(|e| unreadable(&e))?.is_none()
    {
        return Err(format!("it does not contain `{p}`"));
    }
    let kind = phase.output_artifact_type;
    if kind.is_json() {
        json_artifact(kind, text).map(Some)
    } else {
        Ok(None)
    }
}

/// The implementer's change: committed on its branch and diffed from the base commit, with
/// the worktree its phase opened (`worktree`; opened here for another role's code diff).
fn code_diff(
    env: &PhaseEnv<'_>,
    observer: &PhaseObserver<'_>,
    job: &PhaseJob<'_>,
    worktree: Option<&git2::Repository>,
) -> Result<(String, Option<String>), String> {
    let Some(base) = env.workspace.base_commit.as_deref() else {
        let touched = observer
            .touched
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        return Ok((
            format!(
                "# Not a git repository: no diff. Files the implementer wrote:\n{}\n",
                touched.join("\n")
            ),
            None,
        ));
    };
    let project = project_repo(env)?;
    let opened;
    let worktree = match worktree {
        None if env.in_worktree => {
            opened = open_worktree(env)?;
            Some(&opened)
        }
        other => other,
    };
    if let Some(worktree) = worktree {
        let message = format!(
            "autowrkers: {} (iteration {})",
            job.phase.name, job.iteration
        );
        let tip = git::commit_worktree(worktree, &message).map_err(|e| e.to_string())?;
        let diff = project
            .diff_from(base, Some(worktree))
            .map_err(|e| e.to_string())?;
        return Ok((diff, Some(tip)));
    }
    Ok((
        project.diff_from(base, None).map_err(|e| e.to_string())?,
        None,
    ))
}

async fn run_verifier(
    env: &PhaseEnv<'_>,
    observer: &PhaseObserver<'_>,
    sandbox: Option<&Sandbox>,
    config: &ProviderConfig,
) -> PhaseOutcome {
    let Some(sandbox) = sandbox else {
        return PhaseOutcome::failed(
            Tally::new(),
            config,
            "the verifier has no sandbox".to_owned(),
        );
    };
    let report = verify::run(env.checks, sandbox, |line| observer.note(line)).await;
    let passed = report.passed;
    PhaseOutcome {
        status: PhaseStatus::Completed,
        passed: Some(passed),
        artifact: Some(serde_json::to_string_pretty(&report).unwrap_or_default()),
        tally: Tally::new(),
        provider_used: "none".to_owned(),
        model_used: String::new(),
        error: if passed {
            String::new()
        } else {
            report
                .note
                .clone()
                .unwrap_or_else(|| "a check failed".to_owned())
        },
        duration: Duration::ZERO,
        budget: None,
        commit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::text_artifact;

    #[test]
    fn a_text_answer_loses_its_pattern_and_its_blank_ends() {
        assert_eq!(
            text_artifact("\n plan /done\n".into(), Some("/done")),
            "plan\n"
        );
        assert_eq!(
            text_artifact("a /done b/done".into(), Some("/done")),
            "a  b\n"
        );
        assert_eq!(text_artifact("//done/".into(), Some("/done")), "//\n");
        assert_eq!(text_artifact("  x ".into(), None), "x\n");
    }
}
