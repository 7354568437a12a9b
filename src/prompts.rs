//! Prompt templates (DESIGN §5): Jinja via minijinja with the seed's syntax, including
//! `{{ artifact:task_list }}`. Built-in prompts from `prompts/` are compiled in; files of the
//! same name in `<project>/.autowrkers/prompts` and `~/.autowrkers/prompts` override them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use crate::spec::{ArtifactType, WorkflowTemplate};

/// The built-in prompts, by name.
const BUILT_IN: [(&str, &str); 7] = [
    (
        "system_prompt",
        include_str!("../prompts/system_prompt.md.j2"),
    ),
    (
        "analyzer_prompt",
        include_str!("../prompts/analyzer_prompt.md.j2"),
    ),
    (
        "planner_prompt",
        include_str!("../prompts/planner_prompt.md.j2"),
    ),
    (
        "implementer_prompt",
        include_str!("../prompts/implementer_prompt.md.j2"),
    ),
    (
        "reviewer_functional_prompt",
        include_str!("../prompts/reviewer_functional_prompt.md.j2"),
    ),
    (
        "reviewer_style_prompt",
        include_str!("../prompts/reviewer_style_prompt.md.j2"),
    ),
    (
        "reviewer_security_prompt",
        include_str!("../prompts/reviewer_security_prompt.md.j2"),
    ),
];

/// Artifact names besides the types': `code_diff_full`, the whole change since the start (a
/// reviewer's `code_diff` is, from iteration 2, only what changed since its last review).
pub const EXTRA_ARTIFACTS: [&str; 1] = ["code_diff_full"];

/// Variables every prompt may use, besides `artifact:<type>`.
pub const VARIABLES: [&str; 11] = [
    "project_path",
    "task_description",
    "iteration",
    "max_iterations",
    "lint_command",
    "test_command",
    "build_command",
    "phase_name",
    "role",
    "template_name",
    "agent_cli",
];

/// What a prompt could not do.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// No prompt file has this name.
    #[error("prompt `{0}` not found (built-in: {built_in}; or put {0}.md.j2 in .autowrkers/prompts)", built_in = BUILT_IN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
    NotFound(String),
    /// The template names a variable or artifact that does not exist, or does not parse.
    #[error("prompt `{name}`: {message}")]
    Invalid {
        /// Prompt name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// Values a prompt is rendered with.
#[derive(Debug, Clone, Default)]
pub struct PromptContext {
    /// Plain variables (see [`VARIABLES`]).
    pub vars: BTreeMap<&'static str, minijinja::Value>,
    /// Artifact text by type name; types without one render as "(none yet)".
    pub artifacts: BTreeMap<&'static str, String>,
}

/// Finds and renders prompts.
#[derive(Debug, Clone)]
pub struct PromptLibrary {
    /// Override folders, most specific first.
    dirs: Vec<PathBuf>,
}

/// The prompts this process compiled, by label (a prompt's name; an inline prompt's hash),
/// with the source each was compiled from. A run checks every prompt of its template before
/// it starts (the preflight), prices them (the estimate) and renders two per phase, each
/// through a library of its own: compiling the same source again each time was most of that
/// work. Kept for the process, not a library, and by source, so libraries of projects whose
/// overrides differ stay correct (they compile in turn).
struct Compiled {
    env: Environment<'static>,
    sources: HashMap<String, String>,
}

/// Calls `use_it` with the prompt `source` (translated) compiled under `label`: compiled now
/// unless the same source was compiled under it before.
fn with_compiled<R>(
    label: &str,
    source: String,
    use_it: impl FnOnce(&minijinja::Template<'_, '_>) -> R,
) -> Result<R, minijinja::Error> {
    static COMPILED: OnceLock<Mutex<Compiled>> = OnceLock::new();
    let mut compiled = COMPILED
        .get_or_init(|| {
            Mutex::new(Compiled {
                env: environment(),
                sources: HashMap::new(),
            })
        })
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let Compiled { env, sources } = &mut *compiled;
    if sources.get(label) != Some(&source) {
        sources.remove(label);
        env.add_template_owned(label.to_owned(), source.clone())?;
        sources.insert(label.to_owned(), source);
    }
    Ok(use_it(&env.get_template(label)?))
}

impl PromptLibrary {
    /// A library looking in `dirs` (most specific first) before the built-in prompts.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self { dirs }
    }

    /// The Jinja source for a prompt name, or the text itself when it is an inline prompt.
    pub fn source(&self, name_or_inline: &str) -> Result<String, PromptError> {
        if is_inline(name_or_inline) {
            return Ok(name_or_inline.to_owned());
        }
        for dir in &self.dirs {
            let path = dir.join(format!("{name_or_inline}.md.j2"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                return Ok(text);
            }
        }
        BUILT_IN
            .iter()
            .find(|(n, _)| *n == name_or_inline)
            .map(|(_, s)| (*s).to_owned())
            .ok_or_else(|| PromptError::NotFound(name_or_inline.to_owned()))
    }

    /// Checks every prompt of a template: it exists, parses, and names only known variables
    /// and artifact types. Runs before any call, so a typo costs nothing.
    pub fn check(&self, template: &WorkflowTemplate) -> Vec<(String, PromptError)> {
        let mut problems = Vec::new();
        let mut names: Vec<(String, String)> =
            vec![("(system)".to_owned(), "system_prompt".to_owned())];
        for phase in &template.phases {
            if let Some(p) = &phase.prompt_template {
                names.push((phase.id.clone(), p.clone()));
            }
        }
        for (phase, name) in names {
            if let Err(e) = self.check_one(&name) {
                problems.push((phase, e));
            }
        }
        problems
    }

    fn check_one(&self, name: &str) -> Result<(), PromptError> {
        let label = if is_inline(name) {
            "(inline)".to_owned()
        } else {
            name.to_owned()
        };
        let source = translate(&self.source(name)?);
        let invalid = |message: String| PromptError::Invalid {
            name: label.clone(),
            message,
        };
        let variables = with_compiled(&compiled_label(name), source, |t| {
            t.undeclared_variables(true)
        })
        .map_err(|e| invalid(e.to_string()))?;
        let mut unknown: Vec<String> = variables
            .into_iter()
            .filter(|v| match v.strip_prefix("artifacts.") {
                Some(kind) => {
                    ArtifactType::from_name(kind).is_none() && !EXTRA_ARTIFACTS.contains(&kind)
                }
                None => v != "artifacts" && !VARIABLES.contains(&v.as_str()),
            })
            .map(|v| v.replacen("artifacts.", "artifact:", 1))
            .collect();
        unknown.sort();
        if unknown.is_empty() {
            Ok(())
        } else {
            let known: Vec<String> = ArtifactType::ALL
                .iter()
                .map(|t| format!("artifact:{}", t.as_str()))
                .collect();
            Err(invalid(format!(
                "unknown {}; known: {}, {}",
                unknown
                    .iter()
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                VARIABLES.join(", "),
                known.join(", ")
            )))
        }
    }

    /// Renders a prompt with `ctx`; an undefined value is an error, never an empty string.
    pub fn render(&self, name_or_inline: &str, ctx: &PromptContext) -> Result<String, PromptError> {
        let source = translate(&self.source(name_or_inline)?);
        let invalid = |message: String| PromptError::Invalid {
            name: name_or_inline.chars().take(40).collect(),
            message,
        };
        let mut artifacts: BTreeMap<&str, String> = ArtifactType::ALL
            .iter()
            .map(|t| (t.as_str(), "(none yet)".to_owned()))
            .collect();
        artifacts.extend(ctx.artifacts.iter().map(|(k, v)| (*k, v.clone())));
        let mut vars: BTreeMap<&str, minijinja::Value> = ctx.vars.clone();
        vars.insert("artifacts", minijinja::Value::from_serialize(&artifacts));
        with_compiled(&compiled_label(name_or_inline), source, |t| t.render(vars))
            .and_then(|rendered| rendered)
            .map_err(|e| invalid(e.to_string()))
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env
}

/// The label a prompt is compiled under: its name, or for an inline prompt a hash of its text
/// (so two inline prompts of one template do not take turns being compiled).
fn compiled_label(name_or_inline: &str) -> String {
    if !is_inline(name_or_inline) {
        return name_or_inline.to_owned();
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name_or_inline.hash(&mut hasher);
    format!("(inline {:016x})", hasher.finish())
}

/// A prompt name is one word; anything with spaces, newlines or Jinja is an inline prompt.
fn is_inline(text: &str) -> bool {
    text.contains(char::is_whitespace) || text.contains("{{") || text.contains("{%")
}

/// Rewrites the seed's `artifact:<type>` (not valid Jinja) to `artifacts.<type>` inside
/// `{{ … }}` and `{% … %}` blocks only; text outside blocks is left alone.
fn translate(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find(['{']) {
        let (before, tail) = rest.split_at(start);
        out.push_str(before);
        let close = if tail.starts_with("{{") {
            "}}"
        } else if tail.starts_with("{%") {
            "%}"
        } else {
            out.push('{');
            rest = &tail[1..];
            continue;
        };
        match tail[2..].find(close) {
            Some(end) => {
                let block = &tail[..end + 4];
                out.push_str(&block.replace("artifact:", "artifacts."));
                rest = &tail[end + 4..];
            }
            None => {
                out.push_str(tail);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_only_inside_blocks() {
        assert_eq!(
            translate("a artifact:x {{ artifact:task_list }}"),
            "a artifact:x {{ artifacts.task_list }}"
        );
        assert_eq!(
            translate("{% if artifact:code_diff %}y{% endif %}"),
            "{% if artifacts.code_diff %}y{% endif %}"
        );
    }

    #[test]
    fn unknown_artifacts_and_variables_fail_the_check() {
        let lib = PromptLibrary::new(vec![]);
        assert!(
            lib.check_one("Review {{ artifact:task_list }} for {{ project_path }}")
                .is_ok()
        );
        let err = lib
            .check_one("Use {{ artifact:tasklist }} and {{ projet }}")
            .expect_err("unknown");
        let text = err.to_string();
        assert!(
            text.contains("`artifact:tasklist`") && text.contains("`projet`"),
            "{text}"
        );
    }

    #[test]
    fn built_in_prompts_are_valid() {
        let lib = PromptLibrary::new(vec![]);
        for (name, _) in BUILT_IN {
            lib.check_one(name).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn a_prompt_compiled_once_is_rendered_again_and_an_edited_one_anew() {
        let dir = tempfile::tempdir().unwrap();
        let lib = PromptLibrary::new(vec![dir.path().to_path_buf()]);
        // Another project's library, whose override of the same name says something else.
        let other_dir = tempfile::tempdir().unwrap();
        let other = PromptLibrary::new(vec![other_dir.path().to_path_buf()]);
        std::fs::write(
            other_dir.path().join("mine.md.j2"),
            "Else {{ task_description }}",
        )
        .unwrap();
        let ctx = |task: &str| PromptContext {
            vars: BTreeMap::from([("task_description", minijinja::Value::from(task))]),
            artifacts: BTreeMap::new(),
        };
        let file = dir.path().join("mine.md.j2");
        std::fs::write(&file, "Do {{ task_description }}.").unwrap();
        assert_eq!(lib.render("mine", &ctx("a")).unwrap(), "Do a.");
        // A library made anew takes the compiled prompt and renders its own values; another
        // project's override of the name is its own prompt, before and after.
        let again = PromptLibrary::new(vec![dir.path().to_path_buf()]);
        assert_eq!(again.render("mine", &ctx("b")).unwrap(), "Do b.");
        assert_eq!(other.render("mine", &ctx("b")).unwrap(), "Else b");
        assert_eq!(lib.render("mine", &ctx("b")).unwrap(), "Do b.");
        // The file edited between two renders (the same length, in place): rendered anew.
        std::fs::write(&file, "Go {{ task_description }}.").unwrap();
        assert_eq!(lib.render("mine", &ctx("c")).unwrap(), "Go c.");
        // Two inline prompts do not stand for each other.
        assert_eq!(
            lib.render("One {{ task_description }}", &ctx("x")).unwrap(),
            "One x"
        );
        assert_eq!(
            lib.render("Two {{ task_description }}", &ctx("x")).unwrap(),
            "Two x"
        );
        // A broken edit is an error, and the fixed file renders again.
        std::fs::write(&file, "Do {{ task_description ").unwrap();
        assert!(lib.render("mine", &ctx("d")).is_err());
        std::fs::write(&file, "Do {{ task_description }}!").unwrap();
        assert_eq!(lib.render("mine", &ctx("e")).unwrap(), "Do e!");
    }
}
