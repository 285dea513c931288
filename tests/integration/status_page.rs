//! The status page in a real browser: headless Chromium, driven through ChromeDriver,
//! against a running farm. The screenshot in docs/images/status-page.png comes from
//! here.

use crate::cluster::{eventually, options, random_bytes, Cluster};
use crate::webdriver::Browser;
use bits_proto::PacketType;
use bits_testkit::client::raw::RawRequest;
use std::time::Duration;

const TOKEN: &str = "status-page-test-token-0123";

/// Where the README's screenshot lives.
fn screenshot_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images/status-page.png")
}

/// Some traffic so every part of the page has something to show: finished uploads,
/// sessions left open with some bytes, and a packet bitsgate answers itself.
async fn traffic(cluster: &Cluster, round: u32) {
    for i in 0..3u64 {
        let data = random_bytes(200_000 * (i as usize + 1), i);
        let mut opts = options(100_000);
        opts.ping = false;
        cluster
            .upload(&format!("/uploads/done-{round}-{i}.bin"), &data, &opts)
            .await
            .expect("upload");
    }
    for i in 0..4usize {
        let path = format!("/uploads/open-{round}-{i}.bin");
        let session = cluster.create_session(&path).await;
        let size = 50_000 * (i + 1);
        let fragment = RawRequest::bits(PacketType::Fragment, &path)
            .header("BITS-Session-Id", session.as_str())
            .header(
                "Content-Range",
                format!("bytes 0-{}/{}", size - 1, size * 4),
            )
            .body(random_bytes(size, 100 + i as u64));
        assert_eq!(cluster.send(&fragment).await.status, 200);
    }
    let unknown = RawRequest::bits(PacketType::Fragment, "/uploads/lost.bin")
        .header("BITS-Session-Id", "{00000000-0000-0000-0000-000000000000}")
        .header("Content-Range", "bytes 0-1/2")
        .body(vec![0u8, 1]);
    assert_eq!(cluster.send(&unknown).await.status, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_farm_and_drains_a_backend_in_a_browser() {
    let mut cluster = Cluster::new()
        .backends(3)
        .admin_token(TOKEN)
        // Reads open, so the page loads without the token; its buttons still need it.
        .admin_config("protect_reads = false")
        .config(
            "[health_check]\nkind = \"bits_ping\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\n\
             healthy_threshold = 1\nunhealthy_threshold = 1\n",
        )
        .start()
        .await;
    traffic(&cluster, 0).await;
    // One node gone, so the page shows a down backend too.
    cluster.stop_backend(2).await;
    let shared = cluster.proxy.shared.clone();
    eventually("b2 is down", Duration::from_secs(10), || {
        let generation = shared.generation();
        !generation.farm.backends[2].status.is_up()
    })
    .await;

    let admin = format!("http://{}/", cluster.proxy.admin_addr);
    let (browser, states) = tokio::task::block_in_place(|| {
        let browser = Browser::start(1400, 960);
        browser.open(&admin);
        let states = browser.script(
            "return Array.from(document.querySelectorAll('tr[data-backend]'))\
             .map(r => r.dataset.backend + '=' + r.dataset.state)",
        );
        (browser, states)
    });
    assert_eq!(
        states,
        serde_json::json!(["b0=up", "b1=up", "b2=down"]),
        "rendered backends"
    );
    let sessions = tokio::task::block_in_place(|| {
        browser.script("return document.querySelectorAll('section.two table tbody tr').length")
    });
    assert_eq!(sessions, 8, "four open sessions in each of the two tables");

    // Without the token the API refuses, and the page says so.
    tokio::task::block_in_place(|| {
        browser.click("button[data-action='drain'][data-backend='b0']");
    });
    let message = || {
        tokio::task::block_in_place(|| {
            browser
                .script("var m = document.getElementById('message'); return m.hidden ? '' : m.textContent")
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
    };
    eventually("the refusal is shown", Duration::from_secs(10), || {
        message().contains("401")
    })
    .await;
    let (_, backends) = cluster.admin_json("GET", "/backends", None).await;
    assert_eq!(backends["backends"][0]["drain_admin"], false);

    // With the token, the drain button drains.
    tokio::task::block_in_place(|| {
        browser.type_into("#token", TOKEN);
        browser.click("button[data-action='drain'][data-backend='b0']");
    });
    let mut drained = false;
    for _ in 0..500 {
        let (_, backends) = cluster.admin_json("GET", "/backends", None).await;
        if backends["backends"][0]["drain_admin"] == true {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(drained, "b0 is draining in the admin API after the click");
    eventually("the page shows b0 draining", Duration::from_secs(10), || {
        tokio::task::block_in_place(|| {
            browser.script(
                "var r = document.querySelector(\"tr[data-backend='b0']\"); \
                 return r && r.dataset.state === 'draining' && !!r.querySelector(\"button[data-action='undrain']\")",
            ) == true
        })
    })
    .await;
    assert!(message().contains("Drain b0: done"), "{}", message());

    // Fresh traffic for the rates, then the page as an operator opens it.
    traffic(&cluster, 1).await;
    let png = tokio::task::block_in_place(|| {
        browser.open(&admin);
        browser.screenshot()
    });
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = screenshot_path();
    std::fs::create_dir_all(path.parent().expect("docs/images")).expect("docs/images");
    std::fs::write(&path, png).expect("screenshot written");
    drop(browser);
}

/// With `protect_reads` (the default), a browser gets the token prompt first; a wrong
/// token is refused on the page, the right one loads the farm, and the page keeps
/// refreshing and draining with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_protected_reads_the_page_asks_for_the_token_and_then_works_with_it() {
    let cluster = Cluster::new().backends(2).admin_token(TOKEN).start().await;
    let admin = format!("http://{}/", cluster.proxy.admin_addr);
    let browser = tokio::task::block_in_place(|| {
        let browser = Browser::start(1000, 700);
        browser.open(&admin);
        browser
    });
    let script = |code: &str| tokio::task::block_in_place(|| browser.script(code));
    assert_eq!(
        script("return [!!document.getElementById('login'), document.querySelectorAll('tr[data-backend]').length]"),
        serde_json::json!([true, 0]),
        "the prompt, and nothing of the farm"
    );

    tokio::task::block_in_place(|| {
        browser.type_into("#token", "not-the-token-0123456789");
        browser.click("#login button[type='submit']");
    });
    eventually("a wrong token is refused", Duration::from_secs(10), || {
        script("return document.getElementById('error').textContent") == "wrong token"
    })
    .await;

    tokio::task::block_in_place(|| {
        browser.script("document.getElementById('token').value = ''; return true");
        browser.type_into("#token", TOKEN);
        browser.click("#login button[type='submit']");
    });
    let rows = "return Array.from(document.querySelectorAll('tr[data-backend]'))\
                .map(r => r.dataset.backend + '=' + r.dataset.state)";
    eventually("the farm is shown", Duration::from_secs(10), || {
        script(rows) == serde_json::json!(["b0=up", "b1=up"])
    })
    .await;

    // Two refreshes later (every 5 s), the page still shows the farm: its own
    // requests carry the token.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(script(rows), serde_json::json!(["b0=up", "b1=up"]));
    let message =
        script("var m = document.getElementById('message'); return m.hidden ? '' : m.textContent");
    assert!(
        !message
            .as_str()
            .unwrap_or_default()
            .contains("Refresh failed"),
        "{message}"
    );

    tokio::task::block_in_place(|| {
        browser.click("button[data-action='drain'][data-backend='b1']");
    });
    let mut drained = false;
    for _ in 0..500 {
        let (_, backends) = cluster.admin_json("GET", "/backends", Some(TOKEN)).await;
        if backends["backends"][1]["drain_admin"] == true {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        drained,
        "b1 is draining after a click with the token the prompt took"
    );
}
