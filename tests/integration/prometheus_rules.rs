//! The shipped Prometheus rules, checked and unit-tested by promtool, and the
//! dashboard's queries checked as PromQL.

use crate::promql::{
    alerts_tested_firing, assert_success, dashboard_queries, promtool, repo_path, rules,
    without_variables, ALERT_RULES, RECORDING_RULES, RULES_TEST,
};

#[test]
fn the_shipped_rule_files_pass_promtool_check() {
    let output = promtool(
        &["check", "rules", ALERT_RULES, RECORDING_RULES],
        &repo_path(""),
    );
    assert_success("promtool check rules", &output);
}

#[test]
fn the_alerts_fire_and_stay_quiet_as_their_promtool_tests_expect() {
    let output = promtool(&["test", "rules", RULES_TEST], &repo_path(""));
    assert_success("promtool test rules", &output);
}

#[test]
fn every_alert_has_a_promtool_test_where_it_fires() {
    let tested = alerts_tested_firing();
    let untested: Vec<String> = rules(ALERT_RULES, "alert")
        .into_iter()
        .map(|rule| rule.name)
        .filter(|name| !tested.contains(name))
        .collect();
    assert!(
        untested.is_empty(),
        "no case of {RULES_TEST} expects these alerts to fire: {untested:?}"
    );
}

#[test]
fn every_alert_links_to_its_section_of_the_operations_guide() {
    let guide = std::fs::read_to_string(repo_path("docs/operations.md")).expect("operations.md");
    for rule in rules(ALERT_RULES, "alert") {
        let expected = format!("docs/operations.md#{}", rule.name.to_lowercase());
        assert_eq!(
            rule.annotations.get("runbook"),
            Some(&expected),
            "{} has no runbook annotation",
            rule.name
        );
        assert!(
            guide
                .lines()
                .any(|line| line == format!("### {}", rule.name)),
            "docs/operations.md has no section \"### {}\"",
            rule.name
        );
    }
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in dashboard_queries().iter().enumerate() {
        let expr = serde_json::to_string(&without_variables(query)).expect("JSON string");
        file.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {expr}\n"
        ));
    }
    let path = dir.path().join("dashboard-queries.yml");
    std::fs::write(&path, &file).expect("write rules");
    let output = promtool(&["check", "rules", &path.to_string_lossy()], &repo_path(""));
    assert_success(&format!("promtool check rules on\n{file}"), &output);
}
