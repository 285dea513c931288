//! `classify` on the requests a proxy sees most: a Windows client's Fragment and
//! Create-Session, and a Fragment it must refuse.

use bits_proto::{classify, ClassifyOptions};
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::hint::black_box;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("bench header name"),
            HeaderValue::from_str(value).expect("bench header value"),
        );
    }
    map
}

/// Headers as the Windows client sends them (spec §2, §4): 1 MiB fragment of a 10 MiB file.
fn windows_fragment() -> HeaderMap {
    headers(&[
        ("Host", "uploads.example.com"),
        ("User-Agent", "Microsoft BITS/7.8"),
        ("Accept", "*/*"),
        ("BITS-Packet-Type", "Fragment"),
        ("BITS-Session-Id", "{5e53c221-f2d6-4bf2-b994-1dc43ceaca8d}"),
        ("Content-Name", "report.bin"),
        ("Content-Range", "bytes 1048576-2097151/10485760"),
        ("Content-Length", "1048576"),
        ("Connection", "Keep-Alive"),
    ])
}

fn windows_create_session() -> HeaderMap {
    headers(&[
        ("Accept", "*/*"),
        ("BITS-Packet-Type", "Create-Session"),
        (
            "BITS-Supported-Protocols",
            "{7df0354d-249b-430f-820d-3d2a9bef4931}",
        ),
        ("Content-Name", "report.bin"),
        ("User-Agent", "Microsoft BITS/7.8"),
        ("Host", "uploads.example.com"),
        ("Content-Length", "0"),
        ("Connection", "Keep-Alive"),
    ])
}

fn bench_classify(c: &mut Criterion) {
    let options = ClassifyOptions::default();
    let mut group = c.benchmark_group("classify");

    let fragment = windows_fragment();
    assert!(classify("BITS_POST", &fragment, &options).is_ok());
    group.bench_function("fragment", |b| {
        b.iter(|| classify(black_box("BITS_POST"), black_box(&fragment), &options))
    });

    let create = windows_create_session();
    assert!(classify("BITS_POST", &create, &options).is_ok());
    group.bench_function("create_session", |b| {
        b.iter(|| classify(black_box("BITS_POST"), black_box(&create), &options))
    });

    // A body one byte short of its range: refused after every header has been read,
    // and the refusal owns a copy of the session id to echo.
    let mut short = windows_fragment();
    short.insert("Content-Length", HeaderValue::from_static("1048575"));
    assert!(classify("BITS_POST", &short, &options).is_err());
    group.bench_function("fragment_rejected_length_mismatch", |b| {
        b.iter(|| classify(black_box("BITS_POST"), black_box(&short), &options))
    });

    group.finish();
}

criterion_group!(benches, bench_classify);
criterion_main!(benches);
