//! `autowrkers serve`'s control requests through real HTTP: approve, skip, pause, resume,
//! reject and cancel reach the runner (a live one, or one the server starts), refused ones
//! answer 409 with the reason, and delete removes the execution.

use reqwest::Method;
use serde_json::json;

use crate::fake_llm::FakeLlm;
use crate::pipeline::{project, two_iteration_rules};
use crate::serve::urlencode;
use crate::serve_support::{Server, answer, held_analyzer_rules};
use crate::support::{gated_template, pipeline_template};

#[tokio::test(flavor = "multi_thread")]
async fn control_requests_follow_appendix_b_and_a_cli_run_is_live_over_the_socket() {
    let (server, _h) = FakeLlm::start(two_iteration_rules(std::time::Duration::ZERO)).await;
    let p = project(&server.url());
    p.write("pipeline.yaml", &gated_template(&server.url()));
    let s = Server::start(&p, &[]).await;
    // Started from the CLI: it stops for approval (exit 4).
    let out = p
        .cli(&[
            "run",
            "--task",
            "t",
            "--template",
            "pipeline.yaml",
            "--no-realtime",
        ])
        .await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    let id = p.state()["id"].as_str().unwrap().to_owned();

    // Not allowed in this state: 409 with the reason; nothing written.
    let (code, err) = s
        .post(&format!("/executions/{id}/skip-phase"), json!({}))
        .await;
    assert_eq!(code, 409, "{err}");
    let (code, _) = s
        .post(
            &format!("/executions/{id}/skip-phase"),
            json!({"phase": "zz"}),
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(s.get("/executions/ffffffff").await.0, 404);

    // Approve over HTTP: a runner starts and the socket shows the run complete.
    let mut events = s.events(&id, 0).await;
    events.until("workflow:approval_needed").await;
    let (code, body) = s
        .post(&format!("/executions/{id}/approve"), json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    let rest = events.until("workflow:completed").await;
    assert!(
        rest.iter().any(|e| e["type"] == "workflow:iteration"),
        "{rest:?}"
    );
    let (_, detail) = s.get(&format!("/executions/{id}")).await;
    assert_eq!(detail["status"], "completed");
    assert_eq!(detail["iteration"], 2);
    assert_eq!(detail["actions"], json!([]));
    for action in ["approve", "pause", "cancel", "resume"] {
        let (code, err) = s
            .post(&format!("/executions/{id}/{action}"), json!({}))
            .await;
        assert_eq!(code, 409, "{action}: {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("completed"),
            "{err}"
        );
    }

    // Delete: the folder and the ref go; the id is then unknown.
    let folder = p.execution();
    let (code, _) = answer(s.req(Method::DELETE, &format!("/executions/{id}"))).await;
    assert_eq!(code, 200);
    assert!(!folder.exists());
    let refs = crate::support::git(&p.path(), &["for-each-ref", "refs/autowrkers/"]);
    assert!(!refs.contains(&id), "{refs}");
    assert_eq!(s.get(&format!("/executions/{id}")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn skip_pause_resume_reject_and_cancel_over_http_reach_the_runner() {
    // The analyzer's first answer is held: the run started over HTTP stays in that phase.
    let (server, mut held) = FakeLlm::start(held_analyzer_rules()).await;
    let p = project(&server.url());
    p.write("pipeline.yaml", &pipeline_template(&server.url(), ""));
    p.write("gated.yaml", &gated_template(&server.url()));
    let s = Server::start(&p, &[]).await;
    let (_, projects) = s.get("/projects").await;
    assert_eq!(projects["projects"], json!([p.path()]));
    let start =
        json!({"project_path": p.path(), "task_description": "t", "template_id": "pipeline.yaml"});
    let (code, started) = s.post("/executions", start).await;
    assert_eq!(code, 201, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    held.recv().await.expect("the analyzer is called");
    let mut events = s.events(&id, 0).await;
    events.until("workflow:phase_started").await;
    // A skip without a phase names the phases the state records running; that record is
    // written beside the call (the runner waits only for records of work done): wait for it.
    crate::live_view::until_recorded(&p, "phase-analysis").await;

    // Skip what runs now: the live runner stops the held phase at once.
    let (code, body) = s
        .post(&format!("/executions/{id}/skip-phase"), json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["phases"], json!(["phase-analysis"]));
    let seen = events.until("workflow:phase_completed").await;
    assert_eq!(seen.last().unwrap()["status"], "skipped", "{seen:?}");
    // Pause: the runner stops at its next safe point.
    let (code, body) = s.post(&format!("/executions/{id}/pause"), json!({})).await;
    assert_eq!(code, 200, "{body}");
    events.until("workflow:paused").await;
    let (_, detail) = s.get(&format!("/executions/{id}")).await;
    assert_eq!(detail["status"], "paused");
    assert_eq!(detail["actions"], json!(["resume", "cancel"]));
    // Resume: a runner starts (none is live) and the run completes.
    let (code, body) = s.post(&format!("/executions/{id}/resume"), json!({})).await;
    assert_eq!(code, 200, "{body}");
    events.until("workflow:completed").await;
    let (_, list) = s
        .get(&format!(
            "/executions?project={}&status=completed",
            urlencode(&p.path().to_string_lossy())
        ))
        .await;
    assert_eq!(list["executions"][0]["id"], id.as_str(), "{list}");

    // Reject and cancel of two gated runs started from the CLI.
    let mut gated_ids = Vec::new();
    for _ in 0..2 {
        let (code, id) = p.run_json("g", "gated.yaml", &[]).await;
        assert_eq!(code, 4);
        gated_ids.push(id);
    }
    let (code, _) = s
        .post(&format!("/executions/{}/reject", gated_ids[0]), json!({}))
        .await;
    assert_eq!(code, 200);
    s.events(&gated_ids[0], 0)
        .await
        .until("workflow:failed")
        .await;
    let (code, _) = s
        .post(&format!("/executions/{}/cancel", gated_ids[1]), json!({}))
        .await;
    assert_eq!(code, 200);
    s.events(&gated_ids[1], 0)
        .await
        .until("workflow:cancelled")
        .await;
    let (_, a) = s.get(&format!("/executions/{}", gated_ids[0])).await;
    let (_, b) = s.get(&format!("/executions/{}", gated_ids[1])).await;
    assert_eq!(
        (a["status"].as_str(), b["status"].as_str()),
        (Some("failed"), Some("cancelled"))
    );
}
