//! JSON Schemas generated from the types: the files in `schemas/` that editors use for
//! completion, and the validators every template and JSON artifact passes before use.

use schemars::JsonSchema;
use serde_json::Value;

use super::config::ProjectConfig;
use super::execution::{ExecutionRequest, WorkflowExecution};
use super::reports::{ReviewReport, TaskList, VerificationReport};
use super::template::{ArtifactType, WorkflowTemplate};

/// Every schema we publish, as `(file name, schema)`.
pub fn all_schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "workflow_template.schema.json",
            schema_of::<WorkflowTemplate>(),
        ),
        ("execution.schema.json", schema_of::<ExecutionRequest>()),
        ("state.schema.json", schema_of::<WorkflowExecution>()),
        ("config.schema.json", schema_of::<ProjectConfig>()),
        ("task_list.schema.json", schema_of::<TaskList>()),
        ("review_report.schema.json", schema_of::<ReviewReport>()),
        (
            "verification_report.schema.json",
            schema_of::<VerificationReport>(),
        ),
    ]
}

/// The schema a JSON artifact of this type must satisfy; None for non-JSON types.
pub fn artifact_schema(kind: ArtifactType) -> Option<Value> {
    match kind {
        ArtifactType::TaskList => Some(schema_of::<TaskList>()),
        ArtifactType::ReviewReport => Some(schema_of::<ReviewReport>()),
        ArtifactType::VerificationReport => Some(schema_of::<VerificationReport>()),
        _ => None,
    }
}

/// The template schema, for validating YAML before deserializing it.
pub fn template_schema() -> Value {
    schema_of::<WorkflowTemplate>()
}

fn schema_of<T: JsonSchema>() -> Value {
    let schema = schemars::schema_for!(T);
    // A Schema is a JSON value by construction; converting it cannot fail.
    serde_json::to_value(&schema).unwrap_or(Value::Null)
}

/// Renders a schema as the pretty JSON checked into `schemas/`.
pub fn render(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

/// Checks `instance` against `schema`; returns each error as `(JSON pointer, message)`.
pub fn validate(schema: &Value, instance: &Value) -> Vec<(String, String)> {
    match jsonschema::validator_for(schema) {
        Ok(validator) => validator
            .iter_errors(instance)
            .map(|e| (e.instance_path.as_str().to_owned(), e.to_string()))
            .collect(),
        Err(e) => vec![(String::new(), format!("schema itself is invalid: {e}"))],
    }
}
