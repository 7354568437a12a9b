//! The `scripted` provider: canned replies from a YAML file, chosen by phase, iteration and
//! turn, never by a counter, so retries and resumes stay in step. It costs $0 and is how
//! `template test`, the offline demo and the benchmarks run a template's whole control flow.
//!
//! ```yaml
//! replies:
//!   - phase: phase-implement   # optional: any phase when absent
//!     iteration: 1             # optional
//!     turn: 0                  # optional: model turns already taken in this phase run
//!     tool_calls:
//!       - name: write_file
//!         arguments: {path: src/lib.rs, content: "..."}
//!   - phase: phase-implement
//!     text: "Done. /complete"
//! ```

use std::path::Path;

use serde::Deserialize;

use super::types::{
    BoxFuture, ChatProvider, ChatRequest, ChatResponse, DeltaSink, ProviderError, Role, ToolCall,
};
use crate::spec::TokenUsage;

/// One canned reply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedReply {
    /// Phase id it answers; any when absent.
    #[serde(default)]
    pub phase: Option<String>,
    /// Iteration it answers; any when absent.
    #[serde(default)]
    pub iteration: Option<u32>,
    /// Turn it answers; any when absent.
    #[serde(default)]
    pub turn: Option<usize>,
    /// Text of the reply.
    #[serde(default)]
    pub text: String,
    /// Tool calls of the reply.
    #[serde(default)]
    pub tool_calls: Vec<ScriptedCall>,
}

/// A canned tool call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedCall {
    /// Tool name.
    pub name: String,
    /// Arguments object.
    #[serde(default)]
    pub arguments: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptFile {
    replies: Vec<ScriptedReply>,
}

/// Replies from a script file.
pub struct Scripted {
    replies: Vec<ScriptedReply>,
}

impl Scripted {
    /// Loads the script at `path`.
    pub fn load(path: &Path) -> Result<Self, ProviderError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ProviderError::NotConfigured(format!(
                "scripted provider: cannot read {}: {e}",
                path.display()
            ))
        })?;
        let file: ScriptFile = crate::spec::from_yaml(&text, path)
            .map_err(|e| ProviderError::NotConfigured(e.to_string()))?;
        Ok(Self {
            replies: file.replies,
        })
    }

    fn pick(&self, request: &ChatRequest) -> Option<&ScriptedReply> {
        let turn = request
            .messages
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .count();
        self.replies.iter().find(|r| {
            r.phase.as_deref().is_none_or(|p| p == request.phase_id)
                && r.iteration.is_none_or(|i| i == request.iteration)
                && r.turn.is_none_or(|t| t == turn)
        })
    }
}

impl ChatProvider for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        on_delta: DeltaSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            let reply = self.pick(request).ok_or_else(|| {
                ProviderError::Protocol(format!(
                    "scripted provider: no reply for phase `{}`, iteration {}",
                    request.phase_id, request.iteration
                ))
            })?;
            on_delta(&reply.text);
            let prompt_chars: usize = request.messages.iter().map(|m| m.content.len()).sum();
            let tool_calls = reply
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, c)| ToolCall {
                    id: format!("call_{i}"),
                    name: c.name.clone(),
                    arguments: c.arguments.to_string(),
                    signature: None,
                })
                .collect();
            Ok(ChatResponse {
                text: reply.text.as_str().into(),
                tool_calls,
                // Rough token counts (4 characters a token) so the views have something to show.
                usage: TokenUsage {
                    input: prompt_chars as u64 / 4,
                    output: reply.text.len() as u64 / 4,
                    ..TokenUsage::default()
                },
                served_model: Some(request.model.clone()),
                reported_cost_usd: Some(0.0),
            })
        })
    }
}
