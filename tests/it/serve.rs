//! `autowrkers serve` through real HTTP and a real WebSocket: the token and origin rules, an
//! execution started over the API streaming its events with offsets, control requests as
//! Appendix B allows them, artifacts, templates, providers and budgets. The fake LLM server
//! answers the phases; runners are the real detached `autowrkers resume` processes.

use reqwest::Method;
use serde_json::{Value, json};

use crate::fake_llm::FakeLlm;
use crate::pipeline::{project, two_iteration_rules};
use crate::serve_support::{Server, answer};
use crate::support::{SECRET, gated_template, pipeline_template, run};

#[tokio::test(flavor = "multi_thread")]
async fn every_request_needs_the_token_and_other_origins_are_refused() {
    let p = crate::support::Project::git(&[("a.txt", "a\n")]);
    let s = Server::start(&p, &[]).await;
    assert!(
        s.line.starts_with("autowrkers serve: http://127.0.0.1:"),
        "{}",
        s.line
    );

    // No token, a wrong token, the token in the query of a REST call: 401, JSON error.
    let (code, body) = answer(s.bare(Method::GET, "/executions")).await;
    assert_eq!(code, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = s
        .bare(Method::GET, "/executions")
        .bearer_auth("0".repeat(64));
    assert_eq!(answer(wrong).await.0, 401);
    let in_query = s.bare(Method::GET, &format!("/executions?token={}", s.token));
    assert_eq!(answer(in_query).await.0, 401, "REST takes the header only");
    assert_eq!(s.get("/executions").await.0, 200);
    // The page: 401 without the token; with it, a cookie and a redirect that drops it.
    let page = crate::serve_support::plain_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = page.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = page
        .get(format!("{}/?token={}", s.base, s.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let r = page
        .get(format!("{}/", s.base))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "no CORS"
    );

    // A state-changing request from another origin: 403, even with the token.
    let forged = s
        .req(Method::POST, "/templates")
        .header("origin", "http://evil.example")
        .json(&json!({"name": "x"}));
    let (code, body) = answer(forged).await;
    assert_eq!(code, 403, "{body}");
    // The same from the server's own origin passes the guard.
    let own = s
        .req(Method::POST, "/templates")
        .header("origin", &s.base)
        .json(&json!({"name": "mine"}));
    assert_eq!(answer(own).await.0, 201);
    // A project the server does not serve cannot be written to or run in.
    let elsewhere = tempfile::tempdir().unwrap();
    let path = elsewhere.path().to_string_lossy().into_owned();
    let (code, err) = s
        .get(&format!("/templates?project={}", urlencode(&path)))
        .await;
    assert_eq!(code, 403, "{err}");
    let start = json!({"project_path": path, "task_description": "t"});
    assert_eq!(s.post("/executions", start).await.0, 403);
    // A Host that is not the server's (DNS rebinding): 403.
    let rebound = s
        .req(Method::GET, "/executions")
        .header("host", "evil.example");
    assert_eq!(answer(rebound).await.0, 403);

    // WebSocket: no token 401; a foreign Origin 403.
    let ws_url = format!(
        "ws://{}/api/workflow/ws",
        s.base.trim_start_matches("http://")
    );
    let err = tokio_tungstenite::connect_async(&ws_url).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{ws_url}?token={}", s.token)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");

    // The token file: mode 0600, kept across restarts, replaced by --new-token.
    use std::os::unix::fs::PermissionsExt;
    let file = p.home.path().join("serve.token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), s.token);
    let token = s.token.clone();
    drop(s);
    let again = Server::start(&p, &[]).await;
    assert_eq!(again.token, token, "kept across restarts");
    drop(again);
    let fresh = Server::start(&p, &["--new-token"]).await;
    assert_ne!(fresh.token, token);
    drop(fresh);

    // A non-loopback address needs --allow-remote: a usage error.
    let out = p.cli(&["serve", "--bind", "0.0.0.0:0"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--allow-remote"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_execution_started_over_http_streams_its_events_and_its_artifacts_can_be_edited() {
    let (server, _h) = FakeLlm::start(two_iteration_rules(std::time::Duration::ZERO)).await;
    let p = project(&server.url());
    p.write("pipeline.yaml", &gated_template(&server.url()));
    let s = Server::start(&p, &[]).await;

    // Bad bodies: 400 (malformed), 404 (no such template), 422 (an invalid template file).
    let (code, _) = s
        .post("/executions", json!({"task_description": "x"}))
        .await;
    assert_eq!(code, 400);
    let body = json!({"project_path": p.path(), "task_description": "t", "template_id": "nope"});
    assert_eq!(s.post("/executions", body).await.0, 404);
    p.write("broken.yaml", "name: x\nphases: [\n");
    let body =
        json!({"project_path": p.path(), "task_description": "t", "template_id": "broken.yaml"});
    let (code, err) = s.post("/executions", body).await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("broken.yaml:"),
        "{err}"
    );

    let start = json!({"project_path": p.path(), "task_description": "Add a --verbose flag",
                       "template_id": "pipeline.yaml", "budget_limit": 5.0});
    let (code, started) = s.post("/executions", start).await;
    assert_eq!(code, 201, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();

    // Every event, from the start of the file, with a rising offset; the run stops for approval.
    let mut events = s.events(&id, 0).await;
    let seen = events.until("workflow:approval_needed").await;
    assert_eq!(seen[0]["type"], "workflow:started");
    assert_eq!(seen[0]["offset"], 0);
    let offsets: Vec<u64> = seen.iter().map(|e| e["offset"].as_u64().unwrap()).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    // A reconnect with since=N starts with the event at N; since=N+1 with the one after it.
    let third = offsets[2];
    let mut again = s.events(&id, third).await;
    assert_eq!(again.next().await["offset"], third);
    let mut after = s.events(&id, third + 1).await;
    assert_eq!(after.next().await["offset"], offsets[3]);

    // The list and the details.
    let (_, list) = s.get("/executions?status=awaiting_approval").await;
    assert_eq!(list["executions"][0]["id"], id.as_str(), "{list}");
    let (_, detail) = s.get(&format!("/executions/{}", &id[..8])).await;
    assert_eq!(detail["status"], "awaiting_approval");
    assert_eq!(detail["budget_limit"], 5.0);
    assert_eq!(detail["actions"], json!(["approve", "reject", "cancel"]));
    assert!(
        detail["phases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["status"] != "pending"),
        "{detail}"
    );

    // Artifacts: the ids the CLI prints, URL-safe, unique across executions.
    let (_, arts) = s.get(&format!("/executions/{id}/artifacts")).await;
    let ids: Vec<String> = arts["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    let mut cmd = p.cmd();
    cmd.args(["workflow", "artifacts", &id]);
    let printed = run(cmd).await.stdout;
    for a in &ids {
        assert!(
            a.starts_with(&id) && printed.contains(a.as_str()),
            "{a} in {printed}"
        );
    }
    let tasks = format!("{id}.1.phase-analysis");
    let (code, a) = s.get(&format!("/artifacts/{tasks}")).await;
    assert_eq!(code, 200);
    assert!(
        a["content"].as_str().unwrap().contains("add --verbose"),
        "{a}"
    );
    // An invalid task list is refused with the reason, and the file is unchanged.
    let (code, err) = s
        .put_raw(&format!("/artifacts/{tasks}"), "{\"tasks\": 3}")
        .await;
    assert_eq!(code, 422, "{err}");
    let file = p.execution().join("artifacts/1/phase-analysis.json");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("add --verbose")
    );
    let edited = "{\"summary\": \"edited by hand\", \"tasks\": []}";
    let (code, saved) = s.put_raw(&format!("/artifacts/{tasks}"), edited).await;
    assert_eq!(code, 200, "{saved}");
    assert!(
        saved["stale_phases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "phase-docs"),
        "{saved}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), edited);
    let (_, a) = s.get(&format!("/artifacts/{tasks}")).await;
    assert_eq!(a["is_edited"], true);
    let res = s
        .req(Method::GET, &format!("/artifacts/{tasks}/download"))
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    assert_eq!(res.text().await.unwrap(), edited);
    assert_eq!(s.get(&format!("/artifacts/{id}.9.nope")).await.0, 404);
    assert_eq!(s.get("/artifacts/not-an-id").await.0, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_round_trip_through_the_api_with_line_and_column_errors() {
    let p = crate::support::Project::git(&[("a.txt", "a\n")]);
    let s = Server::start(&p, &[]).await;
    let (_, list) = s.get("/templates").await;
    let ids: Vec<&str> = list["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"default_pipeline"), "{list}");
    assert_eq!(s.get("/templates/nope").await.0, 404);

    let (code, made) = s.post("/templates", json!({"name": "My Pipeline"})).await;
    assert_eq!(code, 201, "{made}");
    assert_eq!(made["id"], "my-pipeline");
    assert_eq!(
        s.post("/templates", json!({"name": "My Pipeline"})).await.0,
        409
    );
    assert_eq!(s.post("/templates", json!({"nam": "x"})).await.0, 400);
    let (_, got) = s.get("/templates/my-pipeline").await;
    assert_eq!(got["summary"]["scope"], "project");
    let yaml = got["yaml"].as_str().unwrap().to_owned();

    // A broken edit: 422 naming the file, line and column; the file is unchanged.
    let file = p.path().join(".autowrkers/templates/my-pipeline.yaml");
    let (code, err) = s
        .put_raw("/templates/my-pipeline", "name: x\nphases:\n  - id: [\n")
        .await;
    assert_eq!(code, 422, "{err}");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("my-pipeline.yaml:"), "{msg}");
    assert!(
        msg.contains("my-pipeline.yaml:4:1:"),
        "line and column: {msg}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), yaml);
    let renamed = yaml.replace("max_iterations: 3", "max_iterations: 5");
    assert_eq!(s.put_raw("/templates/my-pipeline", &renamed).await.0, 200);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("max_iterations: 5")
    );

    let (code, dup) = s
        .post("/templates/my-pipeline/duplicate", json!({"name": "Copy"}))
        .await;
    assert_eq!(code, 201, "{dup}");
    let exported = s
        .req(Method::GET, "/templates/copy/export")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(exported.contains("max_iterations: 5"), "{exported}");
    let imported = exported
        .replace("id: copy", "id: imported")
        .replace("name: Copy", "name: Imported");
    let (code, body) = s.put_raw("/templates/import", &imported).await;
    assert_eq!(code, 405, "import is a POST: {body}");
    let (code, body) = answer(s.req(Method::POST, "/templates/import").body(imported)).await;
    assert_eq!(code, 201, "{body}");
    assert!(
        p.path()
            .join(".autowrkers/templates/imported.yaml")
            .exists()
    );

    let (code, _) = s.post("/templates/imported/default", json!({})).await;
    assert_eq!(code, 200);
    let config = std::fs::read_to_string(p.path().join(".autowrkers/config.yaml")).unwrap();
    assert!(config.contains("default_template: imported"), "{config}");
    let (_, list) = s.get("/templates").await;
    let default: Vec<&Value> = list["templates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["is_default"] == true)
        .collect();
    assert_eq!(default.len(), 1);
    assert_eq!(default[0]["id"], "imported");

    assert_eq!(
        answer(s.req(Method::DELETE, "/templates/copy")).await.0,
        200
    );
    assert!(!p.path().join(".autowrkers/templates/copy.yaml").exists());
    let (code, err) = answer(s.req(Method::DELETE, "/templates/default_pipeline")).await;
    assert_eq!(code, 409, "built in: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_set_but_never_returned_and_budgets_are_read_and_set() {
    let (server, _h) = FakeLlm::start(two_iteration_rules(std::time::Duration::ZERO)).await;
    let p = project(&server.url());
    p.write("pipeline.yaml", &pipeline_template(&server.url(), ""));
    let s = Server::start(&p, &[]).await;

    let (_, status) = s.get("/providers/keys/status").await;
    let openai = |v: &Value| {
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["provider"] == "openai")
            .cloned()
            .unwrap()
    };
    assert_eq!(openai(&status)["set"], false);
    let (code, body) = s.post("/providers/keys", json!({"openai": SECRET})).await;
    assert_eq!(code, 200);
    assert!(!body.to_string().contains(SECRET));
    let (_, status) = s.get("/providers/keys/status").await;
    assert_eq!(openai(&status)["set"], true);
    assert_eq!(openai(&status)["source"], "key store");
    let (_, providers) = s.get("/providers").await;
    assert!(!providers.to_string().contains(SECRET), "{providers}");
    assert!(!status.to_string().contains(SECRET));
    let key_file = std::fs::read(p.home.path().join("provider_keys.age")).unwrap();
    assert!(
        !String::from_utf8_lossy(&key_file).contains(SECRET),
        "encrypted at rest"
    );
    assert_eq!(s.post("/providers/keys", json!({"nope": "x"})).await.0, 404);
    assert_eq!(s.get("/providers/openai/models").await.0, 200);
    // Detection: a provider without it is a 400; an unreachable server a 502 that says so.
    assert_eq!(s.post("/providers/openai/detect", json!({})).await.0, 400);
    let (code, err) = s
        .post(
            "/providers/ollama/detect",
            json!({"url": "http://127.0.0.1:9/v1"}),
        )
        .await;
    assert_eq!(code, 502, "{err}");

    // Budgets: set each scope, read them back; the estimate prices the template.
    let mut cmd = p.cmd();
    cmd.args([
        "run",
        "--task",
        "t",
        "--template",
        "pipeline.yaml",
        "--no-realtime",
        "--budget",
        "3",
    ]);
    run(cmd).await;
    let id = p.state()["id"].as_str().unwrap().to_owned();
    let (code, g) = answer(
        s.req(Method::PUT, "/budget/global/current")
            .json(&json!({"limit": 50.0})),
    )
    .await;
    assert_eq!(code, 200, "{g}");
    assert_eq!(g["limit"], 50.0);
    let project = urlencode(&p.path().to_string_lossy());
    let (code, pr) = answer(
        s.req(Method::PUT, &format!("/budget/project/{project}"))
            .json(&json!({"limit": 20})),
    )
    .await;
    assert_eq!(code, 200, "{pr}");
    assert_eq!(pr["limit"], 20.0);
    let (code, e) = answer(
        s.req(Method::PUT, &format!("/budget/execution/{}", &id[..8]))
            .json(&json!({"limit": 7.5})),
    )
    .await;
    assert_eq!(code, 200, "{e}");
    assert_eq!(e["limit"], 7.5);
    let request = std::fs::read_to_string(p.execution().join("execution.yaml")).unwrap();
    assert!(request.contains("budget_limit: 7.5"), "{request}");
    assert_eq!(s.get("/budget/weekly/x").await.0, 404);
    let bad = s
        .req(Method::PUT, "/budget/global/current")
        .json(&json!({"limit": -1}));
    assert_eq!(answer(bad).await.0, 400);
    let (_, all) = s.get("/budget").await;
    let scopes: Vec<&str> = all["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes[..2], ["global", "project"], "{all}");
    let (code, est) = s
        .get("/cost-estimate?template=pipeline.yaml&task=hello")
        .await;
    assert_eq!(code, 200, "{est}");
    assert_eq!(est["phases"].as_array().unwrap().len(), 6);
    assert_eq!(s.get("/budget/history?days=7").await.0, 200);
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
