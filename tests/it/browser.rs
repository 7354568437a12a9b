//! The dashboard in a real headless Chromium (driven over WebDriver): it opens with the token
//! address, shows a run started from the CLI go from running to completed live, approves a gated
//! execution with its button, edits an artifact, and every page is photographed (under
//! `target/`) and checked not to be blank. `.ci/run` installs chromium and chromedriver and sets
//! AUTOWRKERS_REQUIRE_BROWSER=1, so there the test cannot pass by skipping.

use std::process::Stdio;

use serde_json::json;

use crate::fake_llm::FakeLlm;
use crate::pipeline::project;
use crate::serve_support::{Server, held_analyzer_rules};
use crate::support::{gated_template, pipeline_template, run};
use crate::webdriver::{Browser, available};

/// Whether to run: with the browser, or when CI demands it (then a missing browser fails).
fn browser_or_skip() -> bool {
    if available() {
        return true;
    }
    assert!(
        std::env::var_os("AUTOWRKERS_REQUIRE_BROWSER").is_none(),
        "AUTOWRKERS_REQUIRE_BROWSER is set but chromium/chromedriver are missing"
    );
    eprintln!("skipped: no chromium/chromedriver (apt-get install chromium chromium-driver)");
    false
}

/// Photographs the page now showing as `name` and checks it is not blank.
async fn photo(b: &Browser, name: &str) {
    let text = b
        .exec(
            "return document.getElementById('view').innerText;",
            json!([]),
        )
        .await;
    assert!(
        text.as_str().unwrap_or("").trim().len() > 20,
        "{name}: page is empty: {text}"
    );
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("dashboard")
        .join(format!("{name}.png"));
    let bytes = b.screenshot(&path).await;
    // A blank 1280×900 page compresses to a few kB; one with text and tables is far larger.
    assert!(
        bytes > 15_000,
        "{name}: {bytes} bytes, looks blank ({})",
        path.display()
    );
}

/// Goes to `hash` and waits until the page has rendered it.
async fn page(b: &Browser, hash: &str) {
    b.exec("location.hash = arguments[0];", json!([hash])).await;
    b.wait_for(&format!("document.body.dataset.ready === {}", json!(hash)))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_follows_runs_live_approves_edits_and_shows_every_page() {
    if !browser_or_skip() {
        return;
    }
    // The analyzer's first answer is held: the CLI run stays running until it is released.
    let (server, mut held) = FakeLlm::start(held_analyzer_rules()).await;
    let p = project(&server.url());
    p.write("pipeline.yaml", &pipeline_template(&server.url(), ""));
    p.write("gated.yaml", &gated_template(&server.url()));
    let s = Server::start(&p, &[]).await;
    let mut cli = p.cmd();
    cli.args([
        "run",
        "--task",
        "Add a --verbose flag",
        "--template",
        "pipeline.yaml",
        "--no-realtime",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut cli = cli.spawn().expect("run");
    held.recv().await.expect("the analyzer's call is held");
    let id = p.state()["id"].as_str().unwrap().to_owned();

    let b = Browser::start().await;
    // The token address: the server sets its cookie and drops the token from the URL.
    b.goto(&format!("{}/?token={}", s.base, s.token)).await;
    b.wait_for("document.body.dataset.ready === '#/'").await;
    let url = b.exec("return location.href;", json!([])).await;
    assert!(!url.as_str().unwrap().contains("token"), "{url}");
    b.wait_for(&format!(
        "document.querySelector('tr[data-id=\"{id}\"] [data-status=\"running\"]')"
    ))
    .await;
    photo(&b, "executions").await;

    // The execution page while it runs, then live to completed once the model answers.
    page(&b, &format!("#/x/{id}")).await;
    b.wait_for("document.querySelector('.line [data-status=\"running\"]')")
        .await;
    b.wait_for(
        "document.querySelector('[data-phase=\"phase-analysis\"] [data-status=\"running\"]')",
    )
    .await;
    server.release_holds();
    b.wait_for("document.querySelector('.line [data-status=\"completed\"]')")
        .await;
    let iteration = b
        .exec(
            "return document.querySelector('[data-iteration]').textContent;",
            json!([]),
        )
        .await;
    assert_eq!(iteration, "2/3");
    photo(&b, "execution").await;
    assert!(
        tokio::task::spawn_blocking(move || cli.wait())
            .await
            .unwrap()
            .unwrap()
            .success()
    );

    // A gated run from the CLI waits for approval; the button approves it, and it completes.
    let mut gated = p.cmd();
    gated.args([
        "run",
        "--task",
        "gated",
        "--template",
        "gated.yaml",
        "--no-realtime",
    ]);
    assert_eq!(run(gated).await.code, 4);
    let gated_id = crate::support::all_files(&p.path().join(".autowrkers/executions"))
        .into_iter()
        .filter_map(|(path, _)| {
            let dir = path.parent()?.file_name()?.to_string_lossy().into_owned();
            (path.ends_with("execution.yaml") && dir != id).then_some(dir)
        })
        .next()
        .expect("the gated execution");
    page(&b, &format!("#/x/{gated_id}")).await;
    b.wait_for("document.querySelector('[data-action=\"approve\"]')")
        .await;
    b.click("[data-action=\"approve\"]").await;
    b.wait_for("document.querySelector('.line [data-status=\"completed\"]')")
        .await;

    // Edit an artifact: the page says what re-runs; the file holds the new text.
    let artifact = format!("{gated_id}.1.phase-analysis");
    page(&b, &format!("#/a/{artifact}")).await;
    let read_by = b
        .exec(
            "return document.getElementById('read-by').textContent;",
            json!([]),
        )
        .await;
    assert!(
        read_by.as_str().unwrap().contains("phase-docs"),
        "{read_by}"
    );
    let edited = "{\"summary\": \"edited in the browser\", \"tasks\": []}";
    b.exec(
        "document.getElementById('artifact-text').value = arguments[0];",
        json!([edited]),
    )
    .await;
    b.click("#artifact-save").await;
    let msg = b
        .wait_for("document.getElementById('artifact-msg').textContent")
        .await;
    assert!(msg.as_str().unwrap().starts_with("saved"), "{msg}");
    assert!(msg.as_str().unwrap().contains("phase-docs"), "{msg}");
    let file = p
        .path()
        .join(".autowrkers/executions")
        .join(&gated_id)
        .join("artifacts/1/phase-analysis.json");
    assert_eq!(std::fs::read_to_string(file).unwrap(), edited);
    // Invalid JSON is stopped before it is sent.
    b.exec(
        "document.getElementById('artifact-text').value = '{nope';",
        json!([]),
    )
    .await;
    b.click("#artifact-save").await;
    let msg = b
        .wait_for("document.getElementById('artifact-msg').textContent.includes('not saved') && document.getElementById('artifact-msg').textContent")
        .await;
    assert!(msg.as_str().unwrap().contains("invalid JSON"), "{msg}");
    photo(&b, "artifact").await;

    for (hash, name, ready) in [
        (
            "#/templates",
            "templates",
            "document.querySelector('tr[data-template=\"default_pipeline\"]')",
        ),
        ("#/new", "new", "document.getElementById('new-task')"),
        (
            "#/budget",
            "budget",
            "document.querySelector('tr[data-scope=\"global\"]')",
        ),
        (
            "#/providers",
            "providers",
            "document.querySelector('tr[data-provider=\"openai\"]')",
        ),
    ] {
        page(&b, hash).await;
        b.wait_for(ready).await;
        photo(&b, name).await;
    }
    // The new-execution page prices the run before it can be started.
    page(&b, "#/new").await;
    b.exec(
        "document.getElementById('new-task').value = 'a task';",
        json!([]),
    )
    .await;
    b.click("#new-estimate").await;
    b.wait_for("document.querySelector('[data-total]')").await;
    let enabled = b
        .exec(
            "return !document.getElementById('new-start').disabled;",
            json!([]),
        )
        .await;
    assert_eq!(enabled, true);
}
