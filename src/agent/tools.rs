//! The built-in tools of the agent loop (DESIGN §6): read-only tools for every role, edit and
//! command tools for the implementer only. Each returns text for the model or an error string
//! the model reads and can act on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::confine::confine;
use crate::git::WorktreeGate;
use crate::process::run_shell;
use crate::providers::ToolSpec;
use crate::sandbox::Sandbox;

const MAX_READ: usize = 100_000;
const MAX_LIST: usize = 500;
const MAX_MATCHES: usize = 200;
const COMMAND_OUTPUT_CAP: usize = 16_000;
const SKIP_DIRS: [&str; 5] = [
    ".git",
    "target",
    "node_modules",
    ".autowrkers",
    "__pycache__",
];

/// The tools of one phase, bound to its worktree.
pub struct Toolbox<'s> {
    root: PathBuf,
    sandbox: Option<&'s Sandbox>,
    can_edit: bool,
    command_timeout: Duration,
    /// Opens when `root` is there: every call waits for it.
    ready: WorktreeGate,
}

impl<'s> Toolbox<'s> {
    /// Tools for `root`; `can_edit` adds write_file and edit_file, and run_command when a
    /// sandbox is given to run commands in.
    pub fn new(root: &Path, can_edit: bool, sandbox: Option<&'s Sandbox>) -> std::io::Result<Self> {
        Ok(Self::after(
            root.canonicalize()?,
            can_edit,
            sandbox,
            WorktreeGate::open(),
        ))
    }

    /// Tools for a worktree that may still be in the making at `root` (a canonical path):
    /// each call waits for `ready` first, so the model's first answer can be on its way while
    /// the project is checked out.
    pub fn after(
        root: PathBuf,
        can_edit: bool,
        sandbox: Option<&'s Sandbox>,
        ready: WorktreeGate,
    ) -> Self {
        Self {
            root,
            sandbox,
            can_edit,
            command_timeout: Duration::from_secs(300),
            ready,
        }
    }

    /// The specs offered to the model.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let path = json!({"type": "string", "description": "Path relative to the project root"});
        let mut specs = vec![
            ToolSpec {
                name: "list_files",
                description: "List files under a directory of the project (recursive).",
                parameters: json!({"type": "object", "properties": {"path": path}, "required": []}),
            },
            ToolSpec {
                name: "read_file",
                description: "Read a text file of the project.",
                parameters: json!({"type": "object", "properties": {"path": path}, "required": ["path"]}),
            },
            ToolSpec {
                name: "search",
                description: "Find lines containing a literal text in the project's files.",
                parameters: json!({"type": "object", "properties": {"pattern": {"type": "string"}, "path": path}, "required": ["pattern"]}),
            },
        ];
        if self.can_edit {
            specs.extend([
                ToolSpec {
                    name: "write_file",
                    description: "Create or overwrite a file with the given content.",
                    parameters: json!({"type": "object", "properties": {"path": path, "content": {"type": "string"}}, "required": ["path", "content"]}),
                },
                ToolSpec {
                    name: "edit_file",
                    description: "Replace the one exact occurrence of `search` in a file by `replace`.",
                    parameters: json!({"type": "object", "properties": {"path": path, "search": {"type": "string"}, "replace": {"type": "string"}}, "required": ["path", "search", "replace"]}),
                },
                ToolSpec {
                    name: "run_command",
                    description: "Run a shell command in the project root (timeout 300 s, output tail returned).",
                    parameters: json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}),
                },
            ]);
        }
        specs
    }

    /// Runs one tool call; `Err` is a message for the model, not a failure of the phase.
    pub async fn call(&self, name: &str, arguments: &str) -> Result<String, String> {
        self.ready.wait().await?;
        let args: serde_json::Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments)
                .map_err(|e| format!("arguments are not valid JSON: {e}"))?
        };
        match name {
            "list_files" => self.list_files(parse(args)?),
            "read_file" => self.read_file(parse(args)?),
            "search" => self.search(parse(args)?),
            "write_file" | "edit_file" | "run_command" if !self.can_edit => Err(format!(
                "`{name}` is not available to this role: it may only read"
            )),
            "write_file" => self.write_file(parse(args)?),
            "edit_file" => self.edit_file(parse(args)?),
            "run_command" => self.run_command(parse(args)?).await,
            other => Err(format!("unknown tool `{other}`")),
        }
    }

    fn list_files(&self, a: PathArg) -> Result<String, String> {
        let dir = confine(&self.root, a.path.as_deref().unwrap_or("."))?;
        let mut out = Vec::new();
        walk(&dir, &mut |p| {
            out.push(self.relative(p));
            out.len() < MAX_LIST
        });
        out.sort();
        if out.len() >= MAX_LIST {
            out.push(format!("[stopped at {MAX_LIST} entries]"));
        }
        Ok(out.join("\n"))
    }

    fn read_file(&self, a: PathArg) -> Result<String, String> {
        let path = confine(&self.root, a.path.as_deref().unwrap_or(""))?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", self.relative(&path)))?;
        Ok(truncate(text, MAX_READ))
    }

    fn search(&self, a: SearchArgs) -> Result<String, String> {
        if a.pattern.is_empty() {
            return Err("pattern is empty".to_owned());
        }
        let dir = confine(&self.root, a.path.as_deref().unwrap_or("."))?;
        let mut hits = Vec::new();
        walk(&dir, &mut |p| {
            if let Ok(text) = std::fs::read_to_string(p) {
                for (n, line) in text.lines().enumerate() {
                    if line.contains(&a.pattern) {
                        hits.push(format!("{}:{}: {}", self.relative(p), n + 1, line.trim()));
                    }
                }
            }
            hits.len() < MAX_MATCHES
        });
        Ok(if hits.is_empty() {
            "no matches".to_owned()
        } else {
            hits.join("\n")
        })
    }

    fn write_file(&self, a: WriteArgs) -> Result<String, String> {
        let path = confine(&self.root, &a.path)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        replace_file(&path, a.content.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", a.path))?;
        Ok(format!(
            "wrote {} ({} bytes)",
            self.relative(&path),
            a.content.len()
        ))
    }

    fn edit_file(&self, a: EditArgs) -> Result<String, String> {
        let path = confine(&self.root, &a.path)?;
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", a.path))?;
        if a.search.is_empty() {
            return Err("`search` is empty".to_owned());
        }
        match text.matches(&a.search).count() {
            0 => Err(format!(
                "`search` text not found in {}; read the file and copy the exact text",
                a.path
            )),
            1 => {
                replace_file(&path, text.replacen(&a.search, &a.replace, 1).as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", a.path))?;
                Ok(format!("edited {}", self.relative(&path)))
            }
            n => Err(format!(
                "`search` text occurs {n} times in {}; include more context so it is unique",
                a.path
            )),
        }
    }

    async fn run_command(&self, a: CommandArgs) -> Result<String, String> {
        let sandbox = self
            .sandbox
            .ok_or("`run_command` is not available: this phase has no sandbox")?;
        let outcome = run_shell(
            &a.command,
            sandbox,
            self.command_timeout,
            COMMAND_OUTPUT_CAP,
        )
        .await
        .map_err(|e| format!("cannot start command: {e}"))?;
        let code = outcome
            .exit_code
            .map_or("killed".to_owned(), |c| c.to_string());
        Ok(format!("exit code: {code}\n{}", outcome.output_tail))
    }

    fn relative(&self, p: &Path) -> String {
        p.strip_prefix(&self.root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    }
}

/// Writes `bytes` to a new file beside `path` and renames it over `path`: a hard link or a
/// special file at `path` is replaced, never written through. Keeps an existing file's mode.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".autowrkers-write-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn parse<T: for<'de> Deserialize<'de>>(args: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(args).map_err(|e| format!("bad arguments: {e}"))
}

/// Visits files under `dir` (skipping VCS and build folders) until `visit` returns false.
fn walk(dir: &Path, visit: &mut dyn FnMut(&Path) -> bool) -> bool {
    if dir.is_file() {
        return visit(dir);
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if SKIP_DIRS.iter().any(|s| entry.file_name() == *s) {
                continue;
            }
            if !walk(&path, visit) {
                return false;
            }
        } else if kind.is_file() && !visit(&path) {
            return false;
        }
    }
    true
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("\n[truncated]");
    }
    text
}

#[derive(Deserialize)]
struct PathArg {
    #[serde(default)]
    path: Option<String>,
}
#[derive(Deserialize)]
struct SearchArgs {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
}
#[derive(Deserialize)]
struct WriteArgs {
    path: String,
    content: String,
}
#[derive(Deserialize)]
struct EditArgs {
    path: String,
    search: String,
    replace: String,
}
#[derive(Deserialize)]
struct CommandArgs {
    command: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_waits_for_the_worktree_to_be_made() {
        let root = tempfile::tempdir().unwrap();
        let worktree = root.path().canonicalize().unwrap().join("w");
        let (go, wait_for_go) = std::sync::mpsc::channel::<()>();
        let made = worktree.clone();
        let gate = WorktreeGate::making(move || {
            wait_for_go.recv().map_err(|e| e.to_string())?;
            std::fs::create_dir_all(&made).map_err(|e| e.to_string())?;
            std::fs::write(made.join("main.rs"), "fn main() {}").map_err(|e| e.to_string())
        });
        let toolbox = Toolbox::after(worktree, false, None, gate);
        // The call is polled first: it must wait for the folder, not find it missing.
        let (listed, ()) = tokio::join!(toolbox.call("list_files", "{}"), async {
            go.send(()).unwrap();
        });
        assert!(listed.unwrap().contains("main.rs"));
    }
}
