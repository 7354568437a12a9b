//! Changing template files: create, replace, delete, import and set-default. Templates are
//! files; every one is checked before it is written, and a file is replaced atomically. The CLI
//! (`template create|edit|delete|import|set-default`) and `serve` both go through here.

use std::path::{Path, PathBuf};

use super::{Found, TemplateError, list, resolve};
use crate::spec::{self, SpecError, WorkflowTemplate};
use crate::store::{Home, ProjectDir, StoreError, write_atomic};

/// Why a template file could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// No such template, or an invalid one.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The new text is not a valid template (file, line and column are in the message).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A template of that id exists already in the target folder.
    #[error("{0} exists already; delete it or pick another name")]
    Exists(PathBuf),
    /// Built-in templates are part of the binary.
    #[error(
        "`{0}` is built in; copy it first: `autowrkers template create --name \"My pipeline\" --from {0}`"
    )]
    BuiltIn(String),
    /// The file could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A file-friendly id: lowercase words joined by `-`.
pub fn id_from(name: &str) -> String {
    let words: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if words.is_empty() {
        "template".to_owned()
    } else {
        words.join("-")
    }
}

/// The folder new templates go to: the project's, or the global one.
pub fn target_dir(home: &Home, project: &Path, global: bool) -> PathBuf {
    if global {
        home.templates()
    } else {
        ProjectDir::new(project).templates()
    }
}

/// Writes `template` as `<id>.yaml` in `dir`, refusing to overwrite; what is written is
/// checked to load back first.
pub fn save_new(template: &WorkflowTemplate, dir: &Path) -> Result<PathBuf, ManageError> {
    let file = dir.join(format!("{}.yaml", template.id));
    if file.exists() {
        return Err(ManageError::Exists(file));
    }
    let text = spec::to_yaml(template)?;
    spec::load::parse_template(&text, &file)?;
    write_atomic(&file, text.as_bytes()).map_err(|e| StoreError::io(&file, e))?;
    Ok(file)
}

/// A copy of the template `from` (id, name or file) named `name`, saved as a new file.
pub fn create_from(
    home: &Home,
    project: &Path,
    from: &str,
    name: &str,
    global: bool,
) -> Result<(WorkflowTemplate, PathBuf), ManageError> {
    let mut template = resolve(Some(from), project, home, None)?.template;
    template.id = id_from(name);
    template.name = name.to_owned();
    template.is_default = false;
    template.is_global = global;
    template.created_at = Some(now());
    template.updated_at = template.created_at.clone();
    let file = save_new(&template, &target_dir(home, project, global))?;
    Ok((template, file))
}

/// Saves the YAML `text` as a new template (import): checked, then written as `<id>.yaml`.
/// `origin` names the text in error messages.
pub fn import(
    home: &Home,
    project: &Path,
    text: &str,
    origin: &Path,
    global: bool,
) -> Result<(WorkflowTemplate, PathBuf), ManageError> {
    let mut template = spec::load::parse_template(text, origin)?;
    template.is_global = global;
    let file = save_new(&template, &target_dir(home, project, global))?;
    Ok((template, file))
}

/// The project or global template `wanted` (id or name) with its file; built-in ones cannot
/// be changed in place.
pub fn editable(home: &Home, project: &Path, wanted: &str) -> Result<Found, ManageError> {
    let (found, _) = list(project, home);
    let f = found
        .into_iter()
        .find(|f| f.template.id == wanted || f.template.name == wanted)
        .ok_or_else(|| TemplateError::NotFound(wanted.to_owned()))?;
    if f.scope == "built-in" {
        return Err(ManageError::BuiltIn(wanted.to_owned()));
    }
    Ok(f)
}

/// Replaces the file of an editable template with `text`, which must be a valid template;
/// returns what was saved.
pub fn replace(file: &Path, text: &str) -> Result<WorkflowTemplate, ManageError> {
    let template = spec::load::parse_template(text, file)?;
    write_atomic(file, text.as_bytes()).map_err(|e| StoreError::io(file, e))?;
    Ok(template)
}

/// Deletes the file of an editable template; returns it.
pub fn delete(home: &Home, project: &Path, wanted: &str) -> Result<PathBuf, ManageError> {
    let file = PathBuf::from(editable(home, project, wanted)?.source);
    std::fs::remove_file(&file).map_err(|e| StoreError::io(&file, e))?;
    Ok(file)
}

/// Makes `wanted` the default template of the project (or of every project, `global`) in its
/// `config.yaml`; returns the template's id and the config file.
pub fn set_default(
    home: &Home,
    project: &Path,
    wanted: &str,
    global: bool,
) -> Result<(String, PathBuf), ManageError> {
    let found = resolve(Some(wanted), project, home, None)?;
    let config = if global {
        home.config()
    } else {
        ProjectDir::new(project).config()
    };
    let current = std::fs::read_to_string(&config).unwrap_or_default();
    let text = spec::with_top_level_key(&current, "default_template", &found.template.id, &config)?;
    spec::load::parse_config(&text, &config)?;
    write_atomic(&config, text.as_bytes()).map_err(|e| StoreError::io(&config, e))?;
    Ok((found.template.id, config))
}
