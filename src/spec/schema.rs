//! JSON Schemas generated from the types: the files in `schemas/` that editors use for
//! completion, and the validators every template and JSON artifact passes before use.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use schemars::JsonSchema;
use serde_json::Value;

use super::config::ProjectConfig;
use super::execution::{ExecutionRequest, WorkflowExecution};
use super::reports::{ReviewReport, TaskList, VerificationReport};
use super::template::{ArtifactType, WorkflowTemplate};

/// One schema we publish: its file name, and the type it is derived from (which generates it
/// and, deserializing, says cheaply whether a value passes it).
struct Published {
    name: &'static str,
    generate: fn() -> Value,
    accepts: fn(&Value) -> bool,
}

fn published<T: JsonSchema + serde::de::DeserializeOwned>(name: &'static str) -> Published {
    Published {
        name,
        generate: schema_of::<T>,
        accepts: |v| T::deserialize(v).is_ok(),
    }
}

/// Every schema we publish.
fn catalog() -> [Published; 7] {
    [
        published::<WorkflowTemplate>("workflow_template.schema.json"),
        published::<ExecutionRequest>("execution.schema.json"),
        published::<WorkflowExecution>("state.schema.json"),
        published::<ProjectConfig>("config.schema.json"),
        published::<TaskList>("task_list.schema.json"),
        published::<ReviewReport>("review_report.schema.json"),
        published::<VerificationReport>("verification_report.schema.json"),
    ]
}

fn find(name: &str) -> Option<Published> {
    catalog().into_iter().find(|p| p.name == name)
}

/// Every schema we publish, as `(file name, schema)`.
pub fn all_schemas() -> Vec<(&'static str, Value)> {
    catalog()
        .into_iter()
        .map(|p| (p.name, (p.generate)()))
        .collect()
}

/// True when `instance` deserializes into the type schema `name` was derived from.
fn typed_ok(name: &str, instance: &Value) -> bool {
    find(name).is_some_and(|p| (p.accepts)(instance))
}

/// The schema file a JSON artifact of this type must satisfy; None for non-JSON types.
pub fn artifact_schema_name(kind: ArtifactType) -> Option<&'static str> {
    match kind {
        ArtifactType::TaskList => Some("task_list.schema.json"),
        ArtifactType::ReviewReport => Some("review_report.schema.json"),
        ArtifactType::VerificationReport => Some("verification_report.schema.json"),
        _ => None,
    }
}

/// The schema file templates are checked against.
pub const TEMPLATE_SCHEMA: &str = "workflow_template.schema.json";
/// The schema file project configs are checked against.
pub const CONFIG_SCHEMA: &str = "config.schema.json";

/// The compiled validator of one of [`all_schemas`], built once per process: compiling is the
/// expensive part (memory above all), validating is cheap.
pub fn validator(name: &str) -> Option<&'static jsonschema::Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, &'static jsonschema::Validator>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache.lock().ok()?;
    if let Some(v) = map.get(name) {
        return Some(v);
    }
    let schema = (find(name)?.generate)();
    // Leaked on purpose: at most one per schema file, alive for the whole process anyway.
    let compiled: &'static jsonschema::Validator =
        Box::leak(Box::new(jsonschema::validator_for(&schema).ok()?));
    map.insert(name.to_owned(), compiled);
    Some(compiled)
}

/// Draft-07: what editors' YAML language servers support best, and far cheaper for jsonschema
/// to compile than 2020-12 (whose meta-schema validation alone costs ~30 MB of memory).
fn schema_of<T: JsonSchema>() -> Value {
    let schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<T>();
    // A Schema is a JSON value by construction; converting it cannot fail.
    let mut value = serde_json::to_value(&schema).unwrap_or(Value::Null);
    simplify_enums(&mut value);
    value
}

/// schemars writes a documented unit enum as `oneOf` of one `const` per variant; an `enum`
/// says the same to editors and lets validation errors list the allowed values
/// (`"bogus" is not one of ["openai", …]`) instead of "not valid under any of the schemas".
fn simplify_enums(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let consts: Option<Vec<Value>> =
                map.get("oneOf").and_then(Value::as_array).and_then(|alts| {
                    alts.iter()
                        .map(|a| a.get("const").cloned())
                        .collect::<Option<Vec<Value>>>()
                });
            if let Some(values) = consts {
                map.remove("oneOf");
                map.insert("type".into(), Value::String("string".into()));
                map.insert("enum".into(), Value::Array(values));
            }
            for v in map.values_mut() {
                simplify_enums(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(simplify_enums),
        _ => {}
    }
}

/// Renders a schema as the pretty JSON checked into `schemas/`.
pub fn render(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

/// Checks `instance` against the schema file `name`; returns each error as
/// `(JSON pointer, message)`.
pub fn validate(name: &str, instance: &Value) -> Vec<(String, String)> {
    // The schemas are derived from these types: what they accept passes, and the validator
    // (costly to compile) is needed only to say what is wrong.
    if typed_ok(name, instance) {
        return Vec::new();
    }
    match validator(name) {
        Some(v) => v
            .iter_errors(instance)
            .map(|e| (e.instance_path().as_str().to_owned(), e.to_string()))
            .collect(),
        None => vec![(String::new(), format!("schema {name} is not available"))],
    }
}

#[cfg(test)]
mod tests {
    use super::{typed_ok, validate, validator};

    #[test]
    fn the_types_and_the_schemas_agree_on_artifacts() {
        let cases = [
            (
                "task_list.schema.json",
                serde_json::json!({"summary": "s", "tasks": []}),
                true,
            ),
            (
                "task_list.schema.json",
                serde_json::json!({"summary": "s", "tasks": "no"}),
                false,
            ),
            (
                "review_report.schema.json",
                serde_json::json!({"approved": true, "summary": "ok"}),
                true,
            ),
            (
                "review_report.schema.json",
                serde_json::json!({"summary": "ok"}),
                false,
            ),
        ];
        for (name, doc, valid) in cases {
            assert_eq!(typed_ok(name, &doc), valid, "{name}: {doc}");
            let problems = validate(name, &doc);
            assert_eq!(problems.is_empty(), valid, "{name}: {doc}: {problems:?}");
            // The compiled schema alone says the same.
            let by_schema = validator(name).expect("compiles").is_valid(&doc);
            assert_eq!(by_schema, valid, "{name}: {doc}");
        }
    }
}
