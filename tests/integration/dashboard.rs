//! Every metric the Grafana dashboard and the Prometheus rules query exists on the
//! /metrics page of a freshly started bitsgate after one upload, with the label
//! values the queries ask for.

use crate::cluster::{options, random_bytes, Cluster};
use crate::promql::{
    dashboard_queries, rules, samples, selected, selectors, without_variables, ALERT_RULES,
    RECORDING_RULES,
};
use std::collections::BTreeSet;

fn is_recording(name: &str) -> bool {
    name.contains(':')
}

fn is_bitsgate_metric(name: &str) -> bool {
    name.starts_with("bitsgate_") && !is_recording(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queried_metric_exists_after_one_upload() {
    let cluster = Cluster::new().backends(2).start().await;
    let data = random_bytes(300_000, 77);
    let report = cluster
        .upload("/uploads/dashboard.bin", &data, &options(100_000))
        .await
        .expect("upload");
    let owner = cluster.owners_of(report.session_id.as_deref().expect("session id"))[0];
    // The Close-Session is the last request; once it is counted, every other is too.
    let exposition = cluster
        .metrics_when(
            &format!(
                "bitsgate_requests_total{{backend=\"b{owner}\",class=\"2xx\",packet=\"close_session\"}}"
            ),
            1.0,
        )
        .await;
    let live = samples(&exposition);

    let recorded: BTreeSet<String> = rules(RECORDING_RULES, "record")
        .into_iter()
        .map(|rule| rule.name)
        .collect();
    let mut queries: Vec<(String, String)> = dashboard_queries()
        .into_iter()
        .map(|query| ("dashboard".to_owned(), without_variables(&query)))
        .collect();
    for (file, kind) in [(ALERT_RULES, "alert"), (RECORDING_RULES, "record")] {
        for rule in rules(file, kind) {
            queries.push((format!("{file} {}", rule.name), rule.expr));
        }
    }

    let mut problems = Vec::new();
    let mut checked = BTreeSet::new();
    for (source, expr) in &queries {
        for selector in selectors(expr, is_recording) {
            if !recorded.contains(&selector.name) {
                problems.push(format!(
                    "{source}: {} is not a recording rule of {RECORDING_RULES}",
                    selector.name
                ));
            }
        }
        for selector in selectors(expr, is_bitsgate_metric) {
            checked.insert(selector.name.clone());
            if !selected(&live, &selector) {
                problems.push(format!(
                    "{source}: no sample of {} with {:?} on /metrics",
                    selector.name, selector.equal
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\n/metrics:\n{exposition}",
        problems.join("\n")
    );
    // The check above is only as good as what it found to check.
    for name in [
        "bitsgate_backend_up",
        "bitsgate_backend_retired",
        "bitsgate_backend_transitions_total",
        "bitsgate_upstream_connect_failures_total",
        "bitsgate_request_duration_seconds_bucket",
        "bitsgate_store_failed",
        "bitsgate_max_pinned_sessions",
    ] {
        assert!(checked.contains(name), "no query uses {name}");
    }
}

#[test]
fn the_dashboard_is_laid_out_for_grafana() {
    let text = std::fs::read_to_string(crate::promql::repo_path(crate::promql::DASHBOARD))
        .expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(dashboard["uid"], "bitsgate");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(ids.insert(panel["id"].as_u64().expect("id")), "{title}: id");
        let grid = &panel["gridPos"];
        let (x, w) = (
            grid["x"].as_u64().expect("x"),
            grid["w"].as_u64().expect("w"),
        );
        assert!(x + w <= 24, "{title} is wider than the dashboard");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert!(
                refs.insert(target["refId"].as_str().expect("refId")),
                "{title}"
            );
        }
    }
}
