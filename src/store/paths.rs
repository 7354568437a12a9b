//! Where files live: `~/.autowrkers` (or `AUTOWRKERS_HOME`) and `<project>/.autowrkers`.

use std::path::{Path, PathBuf};

/// The user's global folder.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `AUTOWRKERS_HOME`, else `$HOME/.autowrkers`.
    pub fn from_env() -> Self {
        let root = std::env::var_os("AUTOWRKERS_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".autowrkers")))
            .unwrap_or_else(|| PathBuf::from(".autowrkers"));
        Self { root }
    }

    /// A home at an explicit folder (tests, benchmarks).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `config.yaml`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.yaml")
    }
    /// `workflow_templates/`.
    pub fn templates(&self) -> PathBuf {
        self.root.join("workflow_templates")
    }
    /// `prompts/`.
    pub fn prompts(&self) -> PathBuf {
        self.root.join("prompts")
    }
    /// `index/`: the sled cache.
    pub fn index(&self) -> PathBuf {
        self.root.join("index")
    }
    /// `projects.yaml`: the registry of known projects.
    pub fn projects(&self) -> PathBuf {
        self.root.join("projects.yaml")
    }
    /// `worktrees/<short-id>`: where implementers work, outside the user's checkout.
    pub fn worktree(&self, short_id: &str) -> PathBuf {
        self.root.join("worktrees").join(short_id)
    }
}

/// A project's `.autowrkers` folder.
#[derive(Debug, Clone)]
pub struct ProjectDir {
    project: PathBuf,
}

impl ProjectDir {
    /// The folder of the project at `project` (which should be absolute).
    pub fn new(project: impl Into<PathBuf>) -> Self {
        Self {
            project: project.into(),
        }
    }
    /// The project itself.
    pub fn project(&self) -> &Path {
        &self.project
    }
    /// `<project>/.autowrkers`.
    pub fn root(&self) -> PathBuf {
        self.project.join(".autowrkers")
    }
    /// `config.yaml`.
    pub fn config(&self) -> PathBuf {
        self.root().join("config.yaml")
    }
    /// `templates/`.
    pub fn templates(&self) -> PathBuf {
        self.root().join("templates")
    }
    /// `prompts/`.
    pub fn prompts(&self) -> PathBuf {
        self.root().join("prompts")
    }
    /// `executions/`.
    pub fn executions(&self) -> PathBuf {
        self.root().join("executions")
    }
    /// `executions/<id>/`.
    pub fn execution(&self, id: &str) -> PathBuf {
        self.executions().join(id)
    }
}
