//! Reading templates and config files: YAML syntax, then the JSON Schema, then the types, then
//! the rules a schema cannot say. Every error names the file, line, column and key.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::locate::locate;
use super::schema;
use super::template::{PhaseRole, ProviderType, WorkflowTemplate};

/// One problem found in a file, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The offending key, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a spec file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid YAML, breaks the schema, or breaks a rule.
    #[error("{}", render_invalid(path, problems))]
    Invalid {
        /// The file (or `<built-in>`).
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn render_invalid(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!("invalid {}", path.display());
    for p in problems {
        out.push_str(&format!("\n  {}:{p}", path.display()));
    }
    out
}

impl SpecError {
    fn one(path: &Path, line: usize, column: usize, key: Option<String>, message: String) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            problems: vec![Problem {
                line,
                column,
                key,
                message,
            }],
        }
    }
}

fn yaml_error(path: &Path, e: &serde_yaml::Error) -> SpecError {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    // serde_yaml appends "at line L column C"; we print the position ourselves.
    let text = e.to_string();
    let message = text.split(" at line ").next().unwrap_or(&text).to_owned();
    SpecError::one(path, line, column, None, message)
}

/// Parses YAML `source` into `T` after checking it against `schema` (when given).
pub fn parse_yaml<T: DeserializeOwned>(
    source: &str,
    path: &Path,
    schema: Option<&str>,
) -> Result<T, SpecError> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(source).map_err(|e| yaml_error(path, &e))?;
    // The schemas are derived from these very types, so a file the types accept passes its
    // schema too: the schema (costly to compile) is consulted only to say everything that is
    // wrong with a file they refuse, each problem at its line and column.
    let typed = T::deserialize(&yaml);
    let Some(schema) = schema.filter(|_| typed.is_err()) else {
        return typed
            .or_else(|_| serde_yaml::from_str(source))
            .map_err(|e| yaml_error(path, &e));
    };
    let json = serde_json::to_value(&yaml)
        .map_err(|e| SpecError::one(path, 1, 1, None, format!("not representable as JSON: {e}")))?;
    let problems = schema_problems(source, schema, &json);
    if !problems.is_empty() {
        return Err(SpecError::Invalid {
            path: path.to_path_buf(),
            problems,
        });
    }
    serde_yaml::from_str(source).map_err(|e| yaml_error(path, &e))
}

/// A project or global config: checked against its schema; a file of only comments (as
/// `autowrkers init` writes when nothing was found) is the empty config.
pub fn parse_config(source: &str, path: &Path) -> Result<super::ProjectConfig, SpecError> {
    let blank = source
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if blank {
        return Ok(super::ProjectConfig::default());
    }
    parse_yaml(source, path, Some(super::schema::CONFIG_SCHEMA))
}

fn schema_problems(source: &str, schema: &str, json: &Value) -> Vec<Problem> {
    let Some(validator) = schema::validator(schema) else {
        // Fail closed: a file is never accepted unchecked.
        return vec![Problem {
            line: 1,
            column: 1,
            key: None,
            message: format!(
                "internal: the schema {schema} cannot be compiled; nothing was checked"
            ),
        }];
    };
    let mut problems: Vec<Problem> = validator
        .iter_errors(json)
        .map(|e| {
            let mut pointer = e.instance_path().as_str().to_owned();
            if let jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } =
                &e.kind()
                && let Some(first) = unexpected.first()
            {
                pointer.push('/');
                pointer.push_str(first);
            }
            let (line, column) = locate(source, &pointer);
            let key = pointer
                .rsplit('/')
                .next()
                .filter(|k| !k.is_empty())
                .map(str::to_owned);
            Problem {
                line,
                column,
                key,
                message: e.to_string(),
            }
        })
        .collect();
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

/// Reads a file to a string, naming it on failure.
pub fn read(path: &Path) -> Result<String, SpecError> {
    std::fs::read_to_string(path).map_err(|source| SpecError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses and checks a template; `path` names it in errors and gives the default id.
pub fn parse_template(source: &str, path: &Path) -> Result<WorkflowTemplate, SpecError> {
    let mut template: WorkflowTemplate = parse_yaml(source, path, Some(schema::TEMPLATE_SCHEMA))?;
    if template.id.is_empty() {
        template.id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "template".to_owned());
    }
    let problems = rule_problems(&template, source);
    if problems.is_empty() {
        Ok(template)
    } else {
        Err(SpecError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// Reads, parses and checks a template file.
pub fn load_template(path: &Path) -> Result<WorkflowTemplate, SpecError> {
    parse_template(&read(path)?, path)
}

/// The rules of a template the schema cannot express.
fn rule_problems(t: &WorkflowTemplate, source: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut at = |index: usize, key: &str, message: String| {
        let (line, column) = locate(source, &format!("/phases/{index}/{key}"));
        problems.push(Problem {
            line,
            column,
            key: Some(key.to_owned()),
            message,
        });
    };
    if t.phases.is_empty() {
        at(
            0,
            "phases",
            "a template needs at least one phase".to_owned(),
        );
    }
    for (i, phase) in t.phases.iter().enumerate() {
        if t.phases[..i].iter().any(|p| p.id == phase.id) {
            at(i, "id", format!("phase id `{}` is used twice", phase.id));
        }
        if let Some(other) = &phase.parallel_with {
            match t.phase(other) {
                None => at(i, "parallel_with", format!("no phase has id `{other}`")),
                Some(o) if o.order > phase.order => at(
                    i,
                    "parallel_with",
                    format!(
                        "`{other}` comes later (order {}); name the earlier phase",
                        o.order
                    ),
                ),
                Some(_) => {}
            }
        }
        for c in phase.provider_config.chain() {
            for (key, why) in c.extra_params.misplaced(c.provider_type) {
                at(
                    i,
                    "provider_config",
                    format!(
                        "extra_params.{key} for `{}`: {why}",
                        c.provider_type.as_str()
                    ),
                );
            }
        }
        let none = phase.provider_config.provider_type == ProviderType::None;
        if phase.role == PhaseRole::Verifier && !none {
            at(
                i,
                "provider_config",
                "the verifier runs commands: use provider_type: none".to_owned(),
            );
        }
        if phase.role != PhaseRole::Verifier && none {
            at(
                i,
                "provider_config",
                format!(
                    "role {} needs a model provider, not `none`",
                    phase.role.as_str()
                ),
            );
        }
        if phase.role != PhaseRole::Verifier && phase.prompt_template.is_none() {
            at(
                i,
                "prompt_template",
                "a model phase needs a prompt_template".to_owned(),
            );
        }
    }
    if t.max_iterations == 0 {
        let (line, column) = locate(source, "/max_iterations");
        problems.push(Problem {
            line,
            column,
            key: Some("max_iterations".into()),
            message: "must be at least 1".into(),
        });
    }
    problems
}
