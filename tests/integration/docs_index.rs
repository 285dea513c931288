//! docs/README.md indexes every page of docs/.

use crate::promql::repo_path;

#[test]
fn the_docs_index_links_every_page() {
    let index = std::fs::read_to_string(repo_path("docs/README.md")).expect("docs/README.md");
    let mut pages: Vec<String> = std::fs::read_dir(repo_path("docs"))
        .expect("docs/")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".md") && name != "README.md")
        .collect();
    pages.sort();
    assert!(!pages.is_empty());
    for page in pages {
        assert!(
            index.contains(&format!("]({page})")),
            "docs/README.md does not link {page}"
        );
    }
}
