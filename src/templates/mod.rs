//! Finding templates: a file path, or an id/name among the project's templates, the global ones
//! and the built-in ones (shipped in the binary, so `--template openai-only` works anywhere).
//! Project templates override global ones with the same id, and both override built-in ones.

mod manage;

pub use manage::{
    ManageError, create_from, delete, editable, id_from, import, replace, save_new, set_default,
    target_dir,
};

use std::path::{Path, PathBuf};

use crate::spec::{self, SpecError, WorkflowTemplate};
use crate::store::{Home, ProjectDir};

/// A template and where it came from.
#[derive(Debug, Clone)]
pub struct Found {
    /// The template, checked.
    pub template: WorkflowTemplate,
    /// `project`, `global` or `built-in`.
    pub scope: &'static str,
    /// The file, or `built-in`.
    pub source: String,
}

/// Why no template could be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A template file is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Nothing has that id, name or path.
    #[error("no template `{0}`: give a YAML file, or an id from `autowrkers template list`")]
    NotFound(String),
}

/// The id of the built-in default pipeline (the seed's §8 template).
pub const DEFAULT_ID: &str = "default_pipeline";

/// The templates shipped in the binary: (id, YAML). The default comes first.
const BUILT_IN: [(&str, &str); 3] = [
    (DEFAULT_ID, spec::DEFAULT_TEMPLATE_YAML),
    (
        "openai-only",
        include_str!("../../examples/templates/openai-only.yaml"),
    ),
    (
        "ollama-local",
        include_str!("../../examples/templates/ollama-local.yaml"),
    ),
];

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// Every template visible from `project`: project ones, then global ones not overridden, then
/// the built-in default. Invalid files are returned as errors beside the valid ones.
pub fn list(project: &Path, home: &Home) -> (Vec<Found>, Vec<SpecError>) {
    let mut found: Vec<Found> = Vec::new();
    let mut errors = Vec::new();
    for (scope, dir) in [
        ("project", ProjectDir::new(project).templates()),
        ("global", home.templates()),
    ] {
        for file in yaml_files(&dir) {
            match spec::load::load_template(&file) {
                Ok(template) if !found.iter().any(|f| f.template.id == template.id) => {
                    found.push(Found {
                        template,
                        scope,
                        source: file.to_string_lossy().into_owned(),
                    })
                }
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
    }
    for (id, yaml) in BUILT_IN {
        let shipped = PathBuf::from(format!("<built-in>/{id}.yaml"));
        match spec::load::parse_template(yaml, &shipped) {
            Ok(template) if !found.iter().any(|f| f.template.id == template.id) => {
                found.push(Found {
                    template,
                    scope: "built-in",
                    source: "built-in".to_owned(),
                })
            }
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    (found, errors)
}

/// The template named by `wanted` (file, id or name), else the project's configured default,
/// else one marked `is_default`, else the built-in default.
pub fn resolve(
    wanted: Option<&str>,
    project: &Path,
    home: &Home,
    configured: Option<&str>,
) -> Result<Found, TemplateError> {
    let wanted = wanted.or(configured);
    if let Some(w) = wanted {
        for candidate in [PathBuf::from(w), project.join(w)] {
            if candidate.is_file() {
                let template = spec::load::load_template(&candidate)?;
                return Ok(Found {
                    template,
                    scope: "file",
                    source: candidate.to_string_lossy().into_owned(),
                });
            }
        }
    }
    let (found, errors) = list(project, home);
    let pick = match wanted {
        Some(w) => found.into_iter().find(|f| {
            f.template.id == w
                || f.template.name == w
                || (w == "default" && f.scope == "built-in" && f.template.id == DEFAULT_ID)
        }),
        None => {
            let default = found
                .iter()
                .position(|f| f.template.is_default && f.scope != "built-in");
            match default {
                Some(i) => found.into_iter().nth(i),
                None => found
                    .into_iter()
                    .find(|f| f.scope == "built-in" && f.template.id == DEFAULT_ID),
            }
        }
    };
    match (pick, errors.into_iter().next()) {
        (Some(f), _) => Ok(f),
        (None, Some(e)) => Err(e.into()),
        (None, None) => Err(TemplateError::NotFound(
            wanted.unwrap_or("default").to_owned(),
        )),
    }
}
