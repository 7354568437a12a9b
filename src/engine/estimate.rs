//! `run --dry-run` (the seed's cost estimate): renders every prompt of iteration 1 and prices one
//! worst-case call per phase run, without calling anything.

use std::path::Path;

use super::context::prepare;
use super::runner::{Engine, EngineError};
use crate::agent::Toolbox;
use crate::budget::{CallEstimate, PriceTable, output_cap, worst_case};
use crate::spec::{
    ControlRequests, ExecutionRequest, PhaseRole, TriggerMode, WorkflowExecution, WorkflowTemplate,
};
use crate::store::ExecutionDir;
use crate::verify;

/// The estimate of one phase.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseEstimate {
    /// Phase id.
    pub phase_id: String,
    /// Phase name.
    pub name: String,
    /// `provider model`.
    pub provider: String,
    /// Estimated prompt tokens of its first call (system, prompt, tools).
    pub prompt_tokens: u64,
    /// Output cap assumed.
    pub output_cap: u64,
    /// USD of one call at the prompt size and full output cap; None when the price is unknown.
    pub per_call_usd: Option<f64>,
    /// How often it runs at most (`max_iterations` for phases in the loop).
    pub runs: u32,
    /// The rendered user prompt.
    pub prompt: String,
}

impl Engine {
    /// Renders and prices every phase of `template` for `task` in `project`.
    pub fn estimate(
        &self,
        template: &WorkflowTemplate,
        project: &Path,
        task: &str,
    ) -> Result<Vec<PhaseEstimate>, EngineError> {
        let config = self.project_config(project)?;
        let prices = PriceTable::load(&self.home)?;
        let request = ExecutionRequest {
            id: "dry-run".into(),
            trigger_mode: TriggerMode::ManualTask,
            project_path: project.to_string_lossy().into_owned(),
            task_description: task.to_owned(),
            template: template.clone(),
            template_source: String::new(),
            budget_limit: None,
            iteration_behavior: template.iteration_behavior,
            interactive_mode: false,
            in_place: false,
            sandbox: None,
            include_uncommitted: false,
            no_verify: false,
            created_at: String::new(),
            control: ControlRequests::default(),
            github: None,
        };
        let state = WorkflowExecution::new("dry-run");
        let nowhere = ExecutionDir::new(project.join(".autowrkers/executions/dry-run"));
        let checks = verify::resolve(config.verify.as_ref(), project);
        let prompts = self.prompts(project);
        let loop_start = template.iteration_start_order();
        let mut out = Vec::new();
        for step in template.steps() {
            for phase in step {
                let runs = if loop_start.is_some_and(|o| phase.order >= o) {
                    template.max_iterations
                } else {
                    1
                };
                let cfg = &phase.provider_config;
                let provider = format!("{} {}", cfg.provider_type.as_str(), cfg.model_name)
                    .trim()
                    .to_owned();
                if phase.role == PhaseRole::Verifier {
                    out.push(PhaseEstimate {
                        phase_id: phase.id.clone(),
                        name: phase.name.clone(),
                        provider,
                        prompt_tokens: 0,
                        output_cap: 0,
                        per_call_usd: Some(0.0),
                        runs,
                        prompt: checks
                            .commands
                            .iter()
                            .map(|(n, c)| format!("{n}: {c}"))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    });
                    continue;
                }
                let prepared = prepare(&request, &state, &nowhere, &prompts, &checks, phase, 1)?;
                let tools: usize =
                    Toolbox::new(project, phase.role == PhaseRole::Implementer, None)
                        .map(|t| {
                            t.specs()
                                .iter()
                                .map(|s| s.description.len() + s.parameters.to_string().len())
                                .sum()
                        })
                        .unwrap_or(0);
                // The same worst case the guard reserves before the real call.
                let call = CallEstimate {
                    model: cfg.model_name.clone(),
                    prompt_chars: prepared.system_prompt.len() + prepared.prompt.len() + tools,
                    max_output: cfg.extra_params.max_tokens.map(u64::from),
                };
                let provider_name = cfg.provider_type.as_str();
                let prompt_tokens = call.prompt_tokens();
                let output_cap =
                    output_cap(&prices.pricing(provider_name, &call.model), call.max_output);
                let per_call_usd = worst_case(&prices, provider_name, &call);
                out.push(PhaseEstimate {
                    phase_id: phase.id.clone(),
                    name: phase.name.clone(),
                    provider,
                    prompt_tokens,
                    output_cap,
                    per_call_usd,
                    runs,
                    prompt: prepared.prompt,
                });
            }
        }
        Ok(out)
    }
}
