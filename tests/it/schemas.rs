//! The checked-in schemas are what the code generates, and the shipped templates are valid.

use std::path::Path;

use autowrkers::spec::{self, schema};

#[test]
fn checked_in_schemas_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for (name, value) in schema::all_schemas() {
        let on_disk = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert_eq!(
            on_disk,
            schema::render(&value),
            "schemas/{name} is stale: run `autowrkers schema --out schemas`"
        );
    }
}

#[test]
fn example_templates_load_and_the_default_is_the_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/templates");
    for entry in std::fs::read_dir(dir).expect("examples") {
        let path = entry.expect("entry").path();
        spec::load::load_template(&path).unwrap_or_else(|e| panic!("{e}"));
    }
    let default = spec::default_template().expect("built-in default");
    assert_eq!(default.name, "Gemini-Claude-Codex Pipeline");
    assert_eq!(default.phases.len(), 6);
    let steps = default.steps();
    assert_eq!(steps.len(), 5, "the two reviews share a step");
    assert_eq!(steps[3].len(), 2);
    let review = default.phase("phase-review-func").expect("review");
    assert_eq!(
        review
            .provider_config
            .fallback_provider
            .as_ref()
            .map(|f| f.model_name.as_str()),
        Some("codellama:latest")
    );
}

#[test]
fn the_example_project_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config/project-config.yaml");
    let text = spec::load::read(&path).expect("read");
    let config: spec::ProjectConfig =
        spec::load::parse_yaml(&text, &path, Some(spec::schema::CONFIG_SCHEMA))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.pass_env, ["RUST_BACKTRACE"]);
    assert_eq!(config.output_limits.map(|l| l.event_bytes), Some(4096));
    let watch = config.watch.expect("watch");
    assert_eq!(watch.triggers[0].on_busy, spec::OnBusy::Restart);
    assert_eq!(config.max_parallel_executions, Some(2));
}

#[test]
fn the_example_task_file_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tasks/add-verbose-flag.md");
    let task = autowrkers::triggers::inbox::read(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(task.front.template.as_deref(), Some("openai-only"));
    assert!(task.body.starts_with("Add a `--verbose` flag"));
}
